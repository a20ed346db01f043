"""The conformal layer, the skill shrinkage and adaptive conformal inference on synthetic records.

Outcomes are drawn from a known process, ``y = signal + N(0, sigma_i^2)`` with ``sigma_i = vol_i *
sqrt(h)``, so the coverage and the MAE each method should reach are known in advance; every check
of coverage is made on a FRESH sample from the same process, never on the calibration window.
"""

from __future__ import annotations

import datetime as dt
import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from tickercast.model.calibration import (
    AdaptiveConformal,
    Calibration,
    HorizonCalibration,
    apply_calibration,
    coverage_by_level,
    fit_calibration,
    pit_values,
    qhat_at,
    skill_statement,
)

Z90 = NormalDist().inv_cdf(0.9)
START = dt.date(2024, 1, 2)


def make_records(
    rng: np.random.Generator,
    n: int,
    *,
    horizons: tuple[int, ...] = (1, 5),
    band_scale: float = 0.6,
    skill: str = "none",
    vol_factor: float = 1.0,
) -> pd.DataFrame:
    """Path records of ``n`` rows per horizon from the process of the module docstring.

    Args:
        rng: Random source.
        n: Rows per horizon.
        horizons: Horizons to draw.
        band_scale: The raw band's half-width over the true one (0.6 = 40% too narrow).
        skill: ``"none"`` (q50 = 0), ``"noise"`` (q50 independent noise), ``"real"`` (q50 = signal
            + noise of the same size: the best shrink is 0.5).
        vol_factor: Multiplies the outcome's true volatility but not the reported ``vol`` (a shock
            the model does not see).
    """
    frames = []
    for h in horizons:
        vol = 0.01 * np.exp(0.4 * rng.standard_normal(n))
        sigma = vol * math.sqrt(h)
        if skill == "real":
            signal = 0.6 * sigma * rng.standard_normal(n)
            q50 = signal + 0.6 * sigma * rng.standard_normal(n)
            noise_sd = 0.8 * sigma
        else:
            signal = np.zeros(n)
            q50 = 0.5 * sigma * rng.standard_normal(n) if skill == "noise" else np.zeros(n)
            noise_sd = sigma
        actual = signal + vol_factor * noise_sd * rng.standard_normal(n)
        half = band_scale * Z90 * noise_sd
        frames.append(
            pd.DataFrame(
                {
                    "model": "tft",
                    "symbol": [f"S{i % 50}" for i in range(n)],
                    "origin": START,
                    "horizon": h,
                    "forecast_for": START,
                    "last_close": 100.0,
                    "q10": q50 - half,
                    "q50": q50,
                    "q90": q50 + half,
                    "vol": vol,
                    "actual": actual,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def inside(frame: pd.DataFrame, prefix: str = "c_") -> np.ndarray:
    return (
        (frame["actual"] >= frame[f"{prefix}q10"]) & (frame["actual"] <= frame[f"{prefix}q90"])
    ).to_numpy()


def test_calibrated_band_keeps_its_coverage_on_a_fresh_sample() -> None:
    rng = np.random.default_rng(0)
    calibration = fit_calibration(make_records(rng, 4000), coverage=0.8)
    fresh = apply_calibration(make_records(rng, 20000), calibration)
    for h in (1, 5):
        rows = fresh[fresh["horizon"] == h]
        assert inside(rows, prefix="").mean() < 0.62  # the raw band is 40% too narrow
        assert inside(rows).mean() == pytest.approx(0.8, abs=0.03)
        assert calibration.horizons[h].coverage_raw < 0.62
        assert calibration.horizons[h].coverage_calibrated >= 0.8
        assert calibration.horizons[h].width_calibrated > calibration.horizons[h].width_raw
    assert set(fresh.columns) >= {"model", "symbol", "origin", "last_close", "q10", "c_q10", "c_q50", "c_q90"}
    assert (fresh["c_q10"] <= fresh["c_q50"]).all() and (fresh["c_q50"] <= fresh["c_q90"]).all()


def test_real_skill_is_kept_and_beats_the_random_walk() -> None:
    rng = np.random.default_rng(1)
    calibration = fit_calibration(make_records(rng, 4000, skill="real", horizons=(1,)))
    h1 = calibration.horizons[1]
    # q50 = signal + noise of equal variance: the least-squares factor is 0.5.
    assert 0.3 <= h1.shrink <= 0.7
    assert h1.mae_shrunk < 0.95 * h1.mae_naive
    assert h1.mae_shrunk < 0.95 * h1.mae_raw
    assert h1.skill_t is not None and h1.skill_t > 5
    assert skill_statement(h1).startswith("median error ")
    assert "below the random walk at 1 day" in skill_statement(h1)

    fresh = apply_calibration(make_records(rng, 20000, skill="real", horizons=(1,)), calibration)
    mae = (fresh["actual"] - fresh["c_q50"]).abs().mean()
    assert mae < 0.95 * fresh["actual"].abs().mean()
    assert inside(fresh).mean() == pytest.approx(0.8, abs=0.03)


def test_no_skill_falls_back_to_the_random_walk() -> None:
    rng = np.random.default_rng(2)
    calibration = fit_calibration(make_records(rng, 4000, skill="noise"))
    for h, cal in calibration.horizons.items():
        assert cal.shrink <= 0.1
        assert cal.mae_shrunk <= cal.mae_naive * 1.001
        assert cal.mae_raw > cal.mae_naive
        days = "1 day" if h == 1 else f"{h} days"
        assert skill_statement(cal).startswith(f"no measurable skill over the random walk at {days}")
    fresh = apply_calibration(make_records(rng, 20000, skill="noise"), calibration)
    assert (fresh["actual"] - fresh["c_q50"]).abs().mean() <= fresh["actual"].abs().mean() * 1.01


def test_adaptive_conformal_recovers_coverage_after_volatility_doubles() -> None:
    rng = np.random.default_rng(3)
    calibration = fit_calibration(make_records(rng, 2000, horizons=(1,)))
    aci = AdaptiveConformal(coverage=0.8, gamma=0.02)
    adaptive, fixed = [], []
    for day in range(400):
        factor = 1.0 if day < 50 else 2.0
        today = make_records(rng, 25, horizons=(1,), vol_factor=factor)
        today["forecast_for"] = START + dt.timedelta(days=day)
        banded = apply_calibration(today, calibration, alpha=aci.alpha_map([1]))
        banded["inside"] = inside(banded)
        aci.update_many(banded)
        adaptive.append(banded["inside"].to_numpy())
        fixed.append(inside(apply_calibration(today, calibration)))
    last = slice(-100, None)
    assert np.concatenate(fixed[last]).mean() < 0.6  # the static band no longer keeps its promise
    assert np.concatenate(adaptive[last]).mean() == pytest.approx(0.8, abs=0.05)
    assert aci.alpha(1) < 0.05
    assert aci.updates[1] == 400 * 25
    assert aci.steps[1] == 400  # one step per settlement date
    assert aci.misses[1] == sum(int((~flags).sum()) for flags in adaptive)


def test_adaptive_update_rule_and_clipping() -> None:
    aci = AdaptiveConformal(coverage=0.8, gamma=0.1)
    assert aci.alpha(3) == pytest.approx(0.2)
    assert aci.update(3, covered=True) == pytest.approx(0.2 + 0.1 * 0.2)
    assert aci.update(3, covered=False) == pytest.approx(0.22 - 0.1 * 0.8)
    for _ in range(50):
        aci.update(3, covered=False)
    assert aci.alpha(3) == pytest.approx(0.001)
    assert (aci.updates[3], aci.misses[3]) == (52, 51)
    for _ in range(200):
        aci.update(4, covered=True)
    assert aci.alpha(4) == pytest.approx(0.999)


def test_update_many_batches_by_settlement_date_unless_asked_not_to() -> None:
    day1, day2 = dt.date(2024, 3, 1), dt.date(2024, 3, 4)
    records = pd.DataFrame(
        {
            "horizon": [1, 1, 1, 2],
            "forecast_for": [day2, day1, day1, day1],
            "inside": [True, True, False, False],
        }
    )
    batched = AdaptiveConformal(gamma=0.1)
    batched.update_many(records)
    # day1 at h=1: one step with miss rate 0.5, then day2: one hit.
    assert batched.alpha(1) == pytest.approx(0.2 + 0.1 * (0.2 - 0.5) + 0.1 * 0.2)
    assert batched.alpha(2) == pytest.approx(0.2 - 0.1 * 0.8)
    assert batched.steps == {1: 2, 2: 1}
    row_by_row = AdaptiveConformal(gamma=0.1)
    row_by_row.update_many(records, by=None)
    assert row_by_row.steps == {1: 3, 2: 1}
    assert row_by_row.alpha(1) == pytest.approx(0.2 + 0.1 * (0.2 + 0.2 - 0.8))


def test_json_round_trips_give_equal_objects() -> None:
    rng = np.random.default_rng(4)
    records = make_records(rng, 3000, horizons=(1, 2))
    records.loc[records.index[:100], "vol"] = np.nan
    short = make_records(rng, 5, horizons=(7,))
    calibration = fit_calibration(pd.concat([records, short], ignore_index=True))
    assert Calibration.from_json(calibration.to_json()) == calibration
    assert Calibration.model_validate_json(calibration.model_dump_json()) == calibration

    aci = AdaptiveConformal(gamma=0.01)
    aci.update(1, covered=False)
    aci.update_batch(5, [True, False, True])
    restored = AdaptiveConformal.from_json(aci.to_json())
    assert restored == aci
    assert restored.alpha(5) == aci.alpha(5) and restored.alpha(5) != pytest.approx(0.2)


def test_scores_are_sorted_and_subsampled_keeping_both_tails() -> None:
    rng = np.random.default_rng(5)
    records = make_records(rng, 5000, horizons=(1,))
    full = fit_calibration(records, max_scores=10_000).horizons[1]
    kept = fit_calibration(records).horizons[1]
    assert full.n == kept.n == 5000
    assert len(full.scores) == 5000 and len(kept.scores) == 2000
    assert kept.scores == sorted(kept.scores)
    assert (kept.scores[0], kept.scores[-1]) == (full.scores[0], full.scores[-1])
    assert kept.qhat == full.qhat  # qhat comes from every score, not the subsample
    assert qhat_at(kept.scores, 0.2) == pytest.approx(kept.qhat, abs=0.01)


def test_qhat_is_the_finite_sample_corrected_rank() -> None:
    scores = [float(i) for i in range(1, 20)]  # n = 19
    assert qhat_at(scores, 0.2) == 16.0  # ceil(20 * 0.8)
    assert qhat_at(scores, 0.5) == 10.0  # ceil(20 * 0.5)
    assert qhat_at(scores[:10], 0.01) == 10.0  # rank 11 > n: the largest score
    with pytest.raises(ValueError, match="at least one score"):
        qhat_at([], 0.2)


def test_alpha_replaces_qhat() -> None:
    rng = np.random.default_rng(6)
    records = make_records(rng, 500, horizons=(1,))
    calibration = fit_calibration(records)
    plain = apply_calibration(records, calibration)
    same = apply_calibration(records, calibration, alpha={1: 0.2})
    wider = apply_calibration(records, calibration, alpha={1: 0.05})
    np.testing.assert_allclose(same[["c_q10", "c_q90"]], plain[["c_q10", "c_q90"]])
    assert (wider["c_q90"] - wider["c_q10"] > plain["c_q90"] - plain["c_q10"]).all()
    assert inside(wider).mean() > inside(plain).mean()


def test_missing_vol_falls_back_to_the_median_vol() -> None:
    rng = np.random.default_rng(7)
    records = make_records(rng, 1000, horizons=(1, 5))
    records.loc[records.index[::10], "vol"] = np.nan
    calibration = fit_calibration(records)
    h5 = calibration.horizons[5]
    expected = float(np.nanmedian(records.loc[records["horizon"] == 5, "vol"]))
    assert h5.median_vol == pytest.approx(expected)

    row = records[records["horizon"] == 5].iloc[[0]].copy()
    with_median, without = row.assign(vol=h5.median_vol), row.assign(vol=np.nan)
    out = apply_calibration(pd.concat([with_median, without]), calibration)
    assert np.isfinite(out[["c_q10", "c_q50", "c_q90"]].to_numpy()).all()
    bands = out[["c_q10", "c_q90"]].to_numpy(dtype=float)
    np.testing.assert_allclose(bands[0], bands[1])


def test_without_any_vol_the_scores_are_not_normalised() -> None:
    rng = np.random.default_rng(8)
    records = make_records(rng, 400, horizons=(1,)).assign(vol=np.nan)
    calibration = fit_calibration(records)
    assert calibration.horizons[1].median_vol is None
    out = apply_calibration(records, calibration)
    np.testing.assert_allclose(out["c_q90"] - out["q90"], calibration.horizons[1].qhat)
    assert inside(out).mean() >= 0.8


def test_uncalibrated_horizons_pass_through_and_say_why() -> None:
    rng = np.random.default_rng(9)
    records = make_records(rng, 300, horizons=(1,))
    few = make_records(rng, 10, horizons=(3,))
    unsettled = make_records(rng, 50, horizons=(4,)).assign(actual=np.nan)
    calibration = fit_calibration(pd.concat([records, few, unsettled], ignore_index=True))
    assert set(calibration.horizons) == {1}
    assert calibration.skipped[3] == "10 settled rows at horizon 3; calibration needs at least 20"
    assert calibration.skipped[4].startswith("0 settled rows")
    assert calibration.for_horizon(3) is None

    out = apply_calibration(pd.concat([few, unsettled], ignore_index=True), calibration)
    for raw, cal in (("q10", "c_q10"), ("q50", "c_q50"), ("q90", "c_q90")):
        np.testing.assert_array_equal(out[cal].to_numpy(), out[raw].to_numpy())


def test_coverage_by_level_matches_nominal_for_a_calibrated_model() -> None:
    rng = np.random.default_rng(10)
    right = make_records(rng, 20000, band_scale=1.0)
    levels = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
    table = coverage_by_level(right, levels)
    assert list(table.columns) == ["horizon", "level", "n", "coverage"]
    assert len(table) == 2 * len(levels)
    np.testing.assert_allclose(table["coverage"], table["level"], atol=0.015)

    narrow = make_records(rng, 20000, band_scale=0.6)
    raw = coverage_by_level(narrow, levels)
    at80 = raw[(raw["horizon"] == 1) & (raw["level"] == 0.8)]["coverage"].item()
    assert at80 == pytest.approx(inside(narrow[narrow["horizon"] == 1], prefix="").mean())
    assert (raw["coverage"] < raw["level"] - 0.05).all()

    calibrated = apply_calibration(narrow, fit_calibration(make_records(rng, 4000, band_scale=0.6)))
    fixed = coverage_by_level(calibrated, (0.8,), prefix="c_")
    np.testing.assert_allclose(fixed["coverage"], 0.8, atol=0.03)


def test_pit_values_are_uniform_for_a_calibrated_model() -> None:
    rng = np.random.default_rng(11)
    records = make_records(rng, 20000, horizons=(1,), band_scale=1.0)
    records.loc[records.index[:5], "actual"] = np.nan
    pit = pit_values(records)
    assert pit.index.equals(records.index) and pit.name == "pit"
    assert pit.iloc[:5].isna().all()
    histogram, _ = np.histogram(pit.dropna(), bins=10, range=(0, 1))
    np.testing.assert_allclose(histogram / histogram.sum(), 0.1, atol=0.015)


def test_skill_statement_in_plain_words() -> None:
    base = {
        "qhat": 0.5,
        "n": 100,
        "coverage": 0.8,
        "scores": [0.0, 1.0],
        "median_vol": 0.01,
        "mae_raw": 0.02,
        "coverage_raw": 0.6,
        "coverage_calibrated": 0.8,
        "width_raw": 0.02,
        "width_calibrated": 0.03,
    }
    none = HorizonCalibration(horizon=5, shrink=0.0, mae_shrunk=0.01, mae_naive=0.01, **base)
    assert skill_statement(none) == "no measurable skill over the random walk at 5 days (shrink 0.00)"
    some = HorizonCalibration(horizon=1, shrink=0.65, mae_shrunk=0.00969, mae_naive=0.01, **base)
    assert skill_statement(some) == "median error 3.1% below the random walk at 1 day (shrink 0.65)"
    worse = HorizonCalibration(horizon=2, shrink=0.3, mae_shrunk=0.0101, mae_naive=0.01, **base)
    assert skill_statement(worse).startswith("no measurable skill over the random walk at 2 days")
    luck = some.model_copy(update={"skill_t": 1.2})
    assert skill_statement(luck) == "no measurable skill over the random walk at 1 day (shrink 0.65)"
    assert skill_statement(some.model_copy(update={"skill_t": 3.0})) == skill_statement(some)


def test_bad_input_is_refused_with_the_reason() -> None:
    rng = np.random.default_rng(12)
    records = make_records(rng, 50, horizons=(1,))
    with pytest.raises(ValueError, match="one model"):
        fit_calibration(pd.concat([records, records.assign(model="naive")]))
    with pytest.raises(ValueError, match=r"lack the columns \['vol'\]"):
        fit_calibration(records.drop(columns="vol"))
    with pytest.raises(ValueError, match="coverage must be in"):
        fit_calibration(records, coverage=1.2)
    with pytest.raises(ValueError, match="shrink_grid"):
        fit_calibration(records, shrink_grid=[0.0, 1.5])
