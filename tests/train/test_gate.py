"""The promotion gate on the backtest: figures on the same held-out rows, and the rule that reads them."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from tickercast.features.calendar import trading_days_from
from tickercast.train import gate
from tickercast.train.baselines import origin_rows

DAYS = 420
HORIZON = 3
SYMBOLS = ("AAA", "BBB")
VOL = 0.01


@pytest.fixture(scope="module")
def curated() -> pd.DataFrame:
    """Two random-walk tickers on the exchange calendar: the truth every model is scored on."""
    days = trading_days_from(dt.date(2022, 1, 3), DAYS).astype(dt.date)
    rng = np.random.default_rng(5)
    parts = []
    for i, symbol in enumerate(SYMBOLS):
        close = (50.0 + 50 * i) * np.exp(np.cumsum(rng.normal(0, VOL, DAYS)))
        rv_20 = np.full(DAYS, VOL * np.sqrt(252))
        parts.append(pd.DataFrame({"symbol": symbol, "date": days, "close": close, "rv_20": rv_20}))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def origins(curated: pd.DataFrame) -> list[dt.date]:
    """The last 80 dates before the final one: a held-out window whose forecasts partly settle."""
    dates = sorted(set(curated["date"]))
    return dates[-81:-1]


def _records(curated: pd.DataFrame, origins: list[dt.date], known: float) -> pd.DataFrame:
    """A model whose median knows ``known`` of the realised return, with a random walk's band width."""
    rows = origin_rows(curated, origins, HORIZON)
    half = 1.2816 * VOL * np.sqrt(rows["horizon"].to_numpy())
    median = known * rows["actual"].fillna(0).to_numpy()
    return rows.assign(model="tft", q10=median - half, q50=median, q90=median + half)


def test_the_gate_scores_both_models_on_the_same_rows_against_the_random_walk(
    curated: pd.DataFrame, origins: list[dt.date]
) -> None:
    skilled, random_walk = _records(curated, origins, 0.5), _records(curated, origins, 0.0)
    board = gate.score_gate(skilled, random_walk, curated, origins, HORIZON)

    assert board.horizon == HORIZON
    assert board.origins == origins
    # Only settled rows count: from the last origins the longer horizons run past the data.
    assert board.candidate.n == board.champion.n == len(SYMBOLS) * (80 + 79 + 78)
    # A median of 0 is the random walk's (any shrinkage keeps it there): exactly naive's MAE.
    assert board.champion.mae_vs_naive == pytest.approx(1.0)
    # Knowing half the return roughly halves the error once the online calibration has settled.
    assert 0.4 < board.candidate.mae_vs_naive < 0.7
    assert board.candidate.scaled_crps < board.champion.scaled_crps
    per_horizon = board.table[board.table["model"] == gate.CANDIDATE].set_index("horizon")
    assert board.candidate.scaled_crps == pytest.approx(per_horizon["scaled_crps"].mean())
    assert sorted(board.table["model"].unique()) == [gate.CANDIDATE, gate.CHAMPION, "naive"]

    swapped = gate.score_gate(random_walk, skilled, curated, origins, HORIZON)
    assert swapped.candidate == board.champion and swapped.champion == board.candidate


def test_the_gate_cuts_to_the_horizons_and_origins_asked_for(
    curated: pd.DataFrame, origins: list[dt.date]
) -> None:
    records = _records(curated, origins, 0.3)
    board = gate.score_gate(records, records, curated, origins[:40], 2)
    assert board.horizon == 2 and board.origins == origins[:40]
    assert board.candidate == board.champion
    assert set(board.table["horizon"]) == {1, 2}


def _board(candidate: tuple[float, float], champion: tuple[float, float]) -> gate.GateBoard:
    def score(figures: tuple[float, float]) -> gate.GateScore:
        return gate.GateScore(scaled_crps=figures[0], mae_vs_naive=figures[1], mae=1.0, n=300)

    origins = [dt.date(2024, 3, 1), dt.date(2024, 5, 31)]
    return gate.GateBoard(score(candidate), score(champion), origins, 5, pd.DataFrame())


@pytest.mark.parametrize(
    ("candidate", "champion", "promoted", "words"),
    [
        ((0.6000, 0.980), (0.6200, 0.990), True, "no worse than champion v3"),
        # Inside the tolerances: 0.6229 <= 0.62 * 1.005 and 0.995 <= 0.99 + 0.01.
        ((0.6229, 0.995), (0.6200, 0.990), True, "no worse than champion v3"),
        ((0.6300, 0.980), (0.6200, 0.990), False, "scaled CRPS more than 0.5% above the champion's"),
        ((0.6100, 1.010), (0.6200, 0.990), False, "MAE vs naive more than 0.01 above the champion's"),
        ((math.nan, 0.980), (0.6200, 0.990), False, "not finite"),
        ((0.6000, 0.980), (math.nan, 0.990), True, "champion v3 could not be scored"),
    ],
)
def test_the_rule_reads_scaled_crps_and_mae_vs_naive(
    candidate: tuple[float, float], champion: tuple[float, float], promoted: bool, words: str
) -> None:
    decision = gate.decide(_board(candidate, champion), "3")
    assert decision.promoted is promoted
    assert words in decision.reason
    assert (decision.candidate_scaled_crps, decision.candidate_mae_vs_naive) == pytest.approx(
        candidate, nan_ok=True
    )
    assert (decision.champion_scaled_crps, decision.champion_mae_vs_naive) == pytest.approx(
        champion, nan_ok=True
    )
    assert decision.champion_version == "3"
    assert "2 held-out origin(s) 2024-03-01 .. 2024-05-31, horizons 1..5" in decision.reason
    if promoted is False and words != "not finite":
        assert decision.reason.endswith("champion kept")
        assert f"scaled CRPS {candidate[0]:.4f} vs champion v3's {champion[0]:.4f}" in decision.reason
    # What MLflow gets: both models' figures under gate_<role>_<figure>.
    logged = decision.metrics()
    expected = {"gate_candidate_mae": 1.0, "gate_champion_mae": 1.0}
    expected |= {"gate_candidate_scaled_crps": candidate[0], "gate_candidate_mae_vs_naive": candidate[1]}
    expected |= {"gate_champion_scaled_crps": champion[0], "gate_champion_mae_vs_naive": champion[1]}
    assert logged == pytest.approx(expected, nan_ok=True)


def test_a_note_comes_before_the_reason() -> None:
    decision = gate.decide(_board((0.6, 0.98), (0.62, 0.99)), "3", note="champion v3 saw the first 2")
    assert decision.reason.startswith("champion v3 saw the first 2; no worse than champion v3")


def test_the_champion_is_compared_only_from_origins_it_had_not_learnt_from() -> None:
    days = [dt.date(2024, 1, d) for d in (2, 3, 4, 5, 8)]
    assert gate.unseen_origins(days, dt.date(2023, 12, 29)) == days
    # Forecasts from the last day it learnt from are for later days: that origin still counts.
    assert gate.unseen_origins(days, dt.date(2024, 1, 4)) == days[2:]
    assert gate.unseen_origins(days, dt.date(2024, 1, 9)) == []
    assert gate.unseen_origins(days, None) == []
    assert gate.seen_through({"trained_through": "2024-01-04"}) == dt.date(2024, 1, 4)
    assert gate.seen_through({"split": {"test_start": "2024-01-05"}}) == dt.date(2024, 1, 4)
    assert gate.seen_through({}) is None


@pytest.mark.slow
def test_a_champion_against_itself_is_promoted_with_equal_figures(trained: dict) -> None:
    from tickercast.model.bundle import ModelBundle
    from tickercast.model.inference import walk_forward

    bundle = ModelBundle.load(trained["bundle"])
    curated = pd.read_parquet(trained["root"] / "curated" / "features")
    dates = sorted(pd.to_datetime(curated["date"]).dt.date.unique())
    through = dt.date.fromisoformat(bundle.metadata["trained_through"])
    held_out = [d for d in dates[:-1] if d >= through]
    # Three origins the model learnt from come first: the gate leaves them out and says so.
    earlier = [d for d in dates if d < through][-3:]
    records = walk_forward(bundle, curated, [*earlier, *held_out])

    decision = gate.backtest_gate(records, bundle, "1", curated, [*earlier, *held_out], bundle.horizon)
    assert decision is not None and decision.promoted
    assert decision.candidate_scaled_crps == pytest.approx(decision.champion_scaled_crps)
    assert decision.candidate_mae_vs_naive == pytest.approx(decision.champion_mae_vs_naive)
    assert f"through {through}, after the first 3 of the candidate's held-out origins" in decision.reason
    assert f"origin(s) {held_out[0]} .." in decision.reason

    assert gate.backtest_gate(records, bundle, "1", curated, earlier, bundle.horizon) is None
