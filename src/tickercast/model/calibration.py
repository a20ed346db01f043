"""Calibrated bands and stated skill on path records (pure numpy/pandas, no torch).

Works on the path-record frame of issue 25 (one row per model, symbol, origin and horizon with
``q10``, ``q50``, ``q90`` and ``actual`` as log returns from the origin's close, ``vol`` the daily
volatility at the origin). Per horizon ``h``:

- **Skill shrinkage.** The median becomes ``m = shrink * q50``; ``shrink`` in [0, 1] minimises the
  MAE on the calibration window (0 = the random walk's median 0, 1 = the raw model). Ties go to the
  smaller factor, so a model without skill falls back to the random walk.
- **Conformalised quantile regression.** The raw band is moved onto ``m``: ``lo = m + (q10 - q50)``,
  ``hi = m + (q90 - q50)``; the nonconformity score ``s = max(lo - y, y - hi) / sigma`` with
  ``sigma = vol * sqrt(h)`` (the horizon's median vol where ``vol`` is missing) makes the scores
  comparable across calm and wild tickers. ``qhat`` is the split-conformal quantile of the scores
  and the calibrated band is ``[lo - qhat*sigma, hi + qhat*sigma]``.
- **Adaptive conformal inference** (Gibbs and Candès, 2021): :class:`AdaptiveConformal` moves the
  miscoverage ``alpha_t`` as outcomes settle; :func:`apply_calibration` turns it into a ``qhat`` from
  the stored scores.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from statistics import NormalDist

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

DEFAULT_COVERAGE = 0.8
DEFAULT_GAMMA = 0.005
MIN_ROWS = 20
MAX_SCORES = 2000
MIN_SKILL_T = 2.0
ALPHA_MIN = 0.001
ALPHA_MAX = 0.999
QUANTILES = ("q10", "q50", "q90")
CALIBRATED = ("c_q10", "c_q50", "c_q90")
REQUIRED = ("horizon", *QUANTILES, "vol", "actual")
# z of the 90th percentile: the raw q10..q90 band is a central 80% interval.
_Z90 = NormalDist().inv_cdf(0.9)

METHOD = (
    "per horizon: median shrunk toward the random walk (m = shrink*q50, shrink on a grid minimising "
    "MAE); conformalised quantile regression around m with scores max(lo-y, y-hi)/(vol*sqrt(h)), "
    "qhat the ceil((n+1)*coverage)-th smallest score; adaptive conformal inference may replace the "
    "miscoverage per horizon"
)


class HorizonCalibration(BaseModel):
    """The conformal layer and the skill shrinkage of one horizon, with their calibration figures."""

    horizon: int = Field(description="Trading days after the origin.")
    shrink: float = Field(description="Median factor: 0 = random walk (median 0), 1 = the raw model.")
    qhat: float = Field(description="Split-conformal quantile of the normalised scores at `coverage`.")
    n: int = Field(description="Settled rows of the calibration window.")
    coverage: float = Field(description="Nominal coverage of the band (0.8 for P10-P90).")
    scores: list[float] = Field(description="Sorted normalised scores (an even subsample if too many).")
    median_vol: float | None = Field(
        description="Median daily vol of the window, used where vol is missing; None = scores not normalised."
    )
    mae_raw: float = Field(description="MAE of the raw median q50 (log return).")
    mae_shrunk: float = Field(description="MAE of the shrunk median shrink*q50.")
    mae_naive: float = Field(description="MAE of the random walk (median 0).")
    skill_t: float | None = Field(
        default=None,
        description="t statistic of the per-row MAE gain over the random walk (rows taken as independent).",
    )
    coverage_raw: float = Field(description="Share of outcomes inside the raw q10..q90 band.")
    coverage_calibrated: float = Field(description="Share inside the calibrated band (in sample).")
    width_raw: float = Field(description="Mean width of the raw band (log return).")
    width_calibrated: float = Field(description="Mean width of the calibrated band (log return).")


class Calibration(BaseModel):
    """The conformal layer of one model: a :class:`HorizonCalibration` per calibrated horizon."""

    coverage: float = Field(default=DEFAULT_COVERAGE, description="Nominal band coverage.")
    horizons: dict[int, HorizonCalibration] = Field(default_factory=dict)
    skipped: dict[int, str] = Field(
        default_factory=dict, description="Horizons left uncalibrated, with the reason."
    )
    method: str = METHOD

    def to_json(self) -> str:
        """Return the JSON text (``calibration.json`` of a bundle)."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> Calibration:
        """Parse the JSON text written by :meth:`to_json`."""
        return cls.model_validate_json(text)

    def for_horizon(self, horizon: int) -> HorizonCalibration | None:
        """Return the calibration of ``horizon``, or None when it has none."""
        return self.horizons.get(int(horizon))


def qhat_at(scores: Sequence[float] | np.ndarray, alpha: float) -> float:
    """Return the split-conformal quantile of sorted ``scores`` for miscoverage ``alpha``.

    The ``ceil((n+1)*(1-alpha))``-th smallest score. Where that rank exceeds ``n`` (alpha too small
    for the window) the largest score is returned: the widest band the window supports, kept
    finite so that prices stay numbers.

    Args:
        scores: Sorted ascending scores (at least one).
        alpha: Miscoverage in (0, 1).

    Returns:
        The score at that rank.

    """
    values = np.asarray(scores, dtype=float)
    n = len(values)
    if n == 0:
        raise ValueError("qhat_at needs at least one score")
    rank = math.ceil((n + 1) * (1.0 - alpha) - 1e-9)
    return float(values[min(max(rank, 1), n) - 1])


_erf = np.vectorize(math.erf, otypes=[float])


def _check_columns(records: pd.DataFrame, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in records.columns]
    if missing:
        raise ValueError(f"path records lack the columns {missing}; they have {list(records.columns)}")


def _sigma(vol: np.ndarray, horizon: int, median_vol: float | None) -> np.ndarray:
    """Return the score scale ``vol * sqrt(h)``, with ``median_vol`` where vol is missing or not > 0."""
    if median_vol is None:
        return np.ones_like(vol, dtype=float)
    usable = np.isfinite(vol) & (vol > 0)
    return np.where(usable, vol, median_vol) * math.sqrt(horizon)


def _settled(records: pd.DataFrame) -> pd.DataFrame:
    values = records[[*QUANTILES, "actual"]].to_numpy(dtype=float)
    return records[np.isfinite(values).all(axis=1)]


def _subsample(sorted_scores: np.ndarray, max_scores: int) -> np.ndarray:
    if len(sorted_scores) <= max_scores:
        return sorted_scores
    # Evenly spaced order statistics keep both tails (first and last are always kept).
    index = np.round(np.linspace(0, len(sorted_scores) - 1, max_scores)).astype(int)
    return sorted_scores[index]


def _choose_shrink(q50: np.ndarray, actual: np.ndarray, grid: np.ndarray) -> tuple[float, float]:
    """Return the grid factor of least MAE (the smallest on ties) and that MAE."""
    maes = np.array([np.mean(np.abs(actual - lam * q50)) for lam in grid])
    best = int(np.flatnonzero(maes <= maes.min() * (1 + 1e-12))[0])
    return float(grid[best]), float(maes[best])


def _fit_horizon(
    rows: pd.DataFrame, horizon: int, *, coverage: float, grid: np.ndarray, max_scores: int
) -> HorizonCalibration:
    q10, q50, q90, y = (rows[c].to_numpy(dtype=float) for c in (*QUANTILES, "actual"))
    vol = rows["vol"].to_numpy(dtype=float)
    usable = vol[np.isfinite(vol) & (vol > 0)]
    median_vol = float(np.median(usable)) if len(usable) else None
    sigma = _sigma(vol, horizon, median_vol)

    shrink, mae_shrunk = _choose_shrink(q50, y, grid)
    m = shrink * q50
    gain = np.abs(y) - np.abs(y - m)
    spread = float(np.std(gain, ddof=1))
    skill_t = float(np.mean(gain) / (spread / math.sqrt(len(y)))) if spread > 0 else 0.0
    if skill_t < MIN_SKILL_T:
        # A gain the window cannot tell from luck: serve the random walk's median, whose error
        # is the naive one by construction, rather than a factor fitted to noise.
        shrink, m = 0.0, np.zeros_like(q50)
        mae_shrunk = float(np.mean(np.abs(y)))
    lo, hi = m + (q10 - q50), m + (q90 - q50)
    scores = np.sort(np.maximum(lo - y, y - hi) / sigma)
    qhat = qhat_at(scores, 1.0 - coverage)
    c_lo, c_hi = lo - qhat * sigma, hi + qhat * sigma
    return HorizonCalibration(
        horizon=horizon,
        shrink=shrink,
        qhat=qhat,
        n=len(y),
        coverage=coverage,
        scores=_subsample(scores, max_scores).tolist(),
        median_vol=median_vol,
        mae_raw=float(np.mean(np.abs(y - q50))),
        mae_shrunk=mae_shrunk,
        mae_naive=float(np.mean(np.abs(y))),
        skill_t=skill_t,
        coverage_raw=float(np.mean((y >= q10) & (y <= q90))),
        coverage_calibrated=float(np.mean((y >= c_lo) & (y <= c_hi))),
        width_raw=float(np.mean(q90 - q10)),
        width_calibrated=float(np.mean(c_hi - c_lo)),
    )


def fit_calibration(
    records: pd.DataFrame,
    *,
    coverage: float = DEFAULT_COVERAGE,
    shrink_grid: Sequence[float] | None = None,
    max_scores: int = MAX_SCORES,
    min_rows: int = MIN_ROWS,
) -> Calibration:
    """Fit the shrinkage and the conformal layer per horizon on settled path records of one model.

    Rows whose ``actual`` or quantiles are missing are ignored. A horizon with fewer than
    ``min_rows`` settled rows gets no entry; :attr:`Calibration.skipped` says why.

    Args:
        records: Path records (``horizon``, ``q10``, ``q50``, ``q90``, ``vol``, ``actual``; a
            ``model`` column, if present, must hold a single model).
        coverage: Nominal coverage of the band (0.8 for P10-P90).
        shrink_grid: Candidate shrink factors in [0, 1]; default 0, 0.05, ..., 1.
        max_scores: Most scores kept per horizon (an evenly spaced subsample of the sorted ones).
        min_rows: Fewest settled rows a horizon needs.

    Returns:
        The calibration.

    """
    _check_columns(records, REQUIRED)
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage must be in (0, 1), got {coverage}")
    if max_scores < 2:
        raise ValueError(f"max_scores must be at least 2, got {max_scores}")
    if "model" in records.columns and records["model"].nunique() > 1:
        models = sorted(records["model"].dropna().unique().tolist())
        raise ValueError(f"fit_calibration takes the records of one model, got {models}")
    grid = np.round(np.arange(0, 21) * 0.05, 2) if shrink_grid is None else np.asarray(shrink_grid, float)
    if len(grid) == 0 or not ((grid >= 0) & (grid <= 1)).all():
        raise ValueError(f"shrink_grid must be non-empty values in [0, 1], got {list(grid)}")
    grid = np.unique(grid)

    settled = _settled(records)
    calibration = Calibration(coverage=coverage)
    for horizon in sorted(int(h) for h in records["horizon"].dropna().unique()):
        rows = settled[settled["horizon"] == horizon]
        if len(rows) < min_rows:
            calibration.skipped[horizon] = (
                f"{len(rows)} settled rows at horizon {horizon}; calibration needs at least {min_rows}"
            )
            continue
        calibration.horizons[horizon] = _fit_horizon(
            rows, horizon, coverage=coverage, grid=grid, max_scores=max_scores
        )
    return calibration


def apply_calibration(
    records: pd.DataFrame, calibration: Calibration, *, alpha: Mapping[int, float] | None = None
) -> pd.DataFrame:
    """Add the calibrated quantiles ``c_q10``, ``c_q50``, ``c_q90`` to path records (vectorised).

    A horizon without calibration passes ``q10``, ``q50``, ``q90`` through. The calibrated quantiles
    are ordered (``c_q10 <= c_q50 <= c_q90``): where a band would exclude its own median, it is
    widened to include it, which never lowers coverage.

    Args:
        records: Path records (``horizon``, ``q10``, ``q50``, ``q90``, ``vol``); other columns kept.
        calibration: From :func:`fit_calibration`.
        alpha: Miscoverage per horizon (adaptive conformal inference); where given, the stored
            scores' :func:`qhat_at` ``alpha`` replaces the horizon's ``qhat``.

    Returns:
        A copy of ``records`` with the three columns added.

    """
    _check_columns(records, ("horizon", *QUANTILES, "vol"))
    out = records.copy()
    horizon = records["horizon"].to_numpy()
    q10, q50, q90 = (records[c].to_numpy(dtype=float) for c in QUANTILES)
    vol = records["vol"].to_numpy(dtype=float)
    c_q10, c_q50, c_q90 = q10.copy(), q50.copy(), q90.copy()
    alpha = alpha or {}
    for h, cal in calibration.horizons.items():
        rows = horizon == h
        if not rows.any():
            continue
        qhat = qhat_at(cal.scores, alpha[h]) if h in alpha else cal.qhat
        sigma = _sigma(vol[rows], h, cal.median_vol)
        m = cal.shrink * q50[rows]
        lo = m + (q10[rows] - q50[rows]) - qhat * sigma
        hi = m + (q90[rows] - q50[rows]) + qhat * sigma
        c_q10[rows], c_q50[rows], c_q90[rows] = np.minimum(lo, m), m, np.maximum(hi, m)
    for name, values in zip(CALIBRATED, (c_q10, c_q50, c_q90), strict=True):
        out[name] = values
    return out


def calibrate_online(
    records: pd.DataFrame, *, coverage: float = DEFAULT_COVERAGE, min_rows: int = MIN_ROWS
) -> pd.DataFrame:
    """Calibrate walk-forward records as they would have been at each origin: no outcome from the future.

    The forecasts of an origin get the calibration fitted on the records settled by that day
    (``forecast_for`` on or before the origin); until a horizon has ``min_rows`` of them its raw
    band passes through, and ``calibrated`` says which rows were calibrated.

    Args:
        records: Path records of one model over several origins, ``actual`` filled in.
        coverage: Nominal coverage of the band.
        min_rows: Fewest settled rows a horizon needs before its band is calibrated.

    Returns:
        ``records`` with ``c_q10, c_q50, c_q90`` and ``calibrated`` (bool), in the input's order.

    """
    _check_columns(records, (*REQUIRED, "origin", "forecast_for"))
    parts = []
    for origin, rows in records.groupby("origin", sort=True):
        known = records[records["forecast_for"] <= origin]
        calibration = fit_calibration(known, coverage=coverage, min_rows=min_rows)
        out = apply_calibration(rows, calibration)
        out["calibrated"] = out["horizon"].isin(list(calibration.horizons))
        parts.append(out)
    if not parts:
        return records.assign(**{c: np.nan for c in CALIBRATED}, calibrated=False)
    return pd.concat(parts).loc[records.index]


class AdaptiveConformal(BaseModel):
    """Adaptive conformal inference state: a miscoverage ``alpha_t`` per horizon.

    After each settled outcome ``alpha_t += gamma * ((1 - coverage) - miss)``, clipped to
    [0.001, 0.999]: misses lower alpha (wider bands), hits raise it. Outcomes that settle together
    (a cross-section of tickers on one day) make one step with their miss rate. Persist :meth:`to_json` (the
    caller writes it atomically) and :meth:`from_json` it after a restart.
    """

    coverage: float = DEFAULT_COVERAGE
    gamma: float = DEFAULT_GAMMA
    alphas: dict[int, float] = Field(default_factory=dict, description="alpha_t per horizon.")
    updates: dict[int, int] = Field(default_factory=dict, description="Outcomes seen per horizon.")
    misses: dict[int, int] = Field(default_factory=dict, description="Outcomes outside the band.")
    steps: dict[int, int] = Field(default_factory=dict, description="alpha_t updates per horizon.")

    @property
    def target(self) -> float:
        """The nominal miscoverage ``1 - coverage``."""
        return 1.0 - self.coverage

    def alpha(self, horizon: int) -> float:
        """Return ``alpha_t`` of ``horizon`` (``1 - coverage`` before any update)."""
        return self.alphas.get(int(horizon), self.target)

    def alpha_map(self, horizons: Iterable[int]) -> dict[int, float]:
        """Return ``alpha_t`` per horizon, ready for :func:`apply_calibration`'s ``alpha``."""
        return {int(h): self.alpha(h) for h in horizons}

    def update(self, horizon: int, covered: bool) -> float:
        """Take one settled outcome of ``horizon``; return the new ``alpha_t``."""
        return self.update_batch(horizon, [covered])

    def update_batch(self, horizon: int, covered: Sequence[bool] | np.ndarray) -> float:
        """Take outcomes that settled together (one day, many tickers) as ONE step.

        The step uses the batch's miss rate, so that a cross-section of thousands of tickers moves
        alpha as much as one series does per day instead of thousands of steps at once.

        Args:
            horizon: The horizon the outcomes belong to.
            covered: Whether each outcome fell inside its band.

        Returns:
            The new ``alpha_t``.

        """
        flags = np.asarray(covered, dtype=bool)
        if flags.size == 0:
            return self.alpha(horizon)
        h = int(horizon)
        miss = int((~flags).sum())
        step = self.gamma * (self.target - miss / flags.size)
        self.alphas[h] = float(np.clip(self.alpha(h) + step, ALPHA_MIN, ALPHA_MAX))
        self.updates[h] = self.updates.get(h, 0) + int(flags.size)
        self.misses[h] = self.misses.get(h, 0) + miss
        self.steps[h] = self.steps.get(h, 0) + 1
        return self.alphas[h]

    def update_many(
        self, records: pd.DataFrame, *, inside: str = "inside", by: str | None = "forecast_for"
    ) -> dict[int, float]:
        """Take settled path records with an inside flag; one step per horizon and ``by`` value.

        Rows are grouped per horizon and per ``by`` value (the date the outcome settled), in
        ascending ``by`` order, each group one :meth:`update_batch`. With ``by=None`` or without
        that column every row is one step, in the frame's order.

        Args:
            records: Rows with ``horizon`` and the boolean column ``inside``.
            inside: The column that says whether the outcome fell inside its band.
            by: The settlement column that batches simultaneous outcomes.

        Returns:
            ``alpha_t`` per horizon after the updates.

        """
        _check_columns(records, ("horizon", inside))
        frame = records[records[inside].notna()]
        for h, rows in frame.groupby("horizon", sort=True):
            flags = rows[inside].to_numpy(dtype=bool)
            if by is not None and by in rows.columns:
                keys = rows[by].to_numpy()
                order = np.argsort(keys, kind="stable")
                keys, flags = keys[order], flags[order]
                starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
                for batch in np.split(flags, starts[1:]):
                    self.update_batch(int(h), batch)
            else:
                for flag in flags:
                    self.update_batch(int(h), [bool(flag)])
        return dict(self.alphas)

    def to_json(self) -> str:
        """Return the JSON text of the state."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> AdaptiveConformal:
        """Parse the JSON text written by :meth:`to_json`."""
        return cls.model_validate_json(text)


def pit_values(records: pd.DataFrame, *, prefix: str = "") -> pd.Series:
    """Return the probability integral transform of ``actual`` under each row's quantiles.

    The predictive distribution is the split normal that passes through the row's P10, P50 and
    P90 (a normal on each side of the median). Calibrated outcomes give uniform PIT values.

    Args:
        records: Path records with ``actual``.
        prefix: ``""`` for the raw quantiles, ``"c_"`` for the calibrated ones.

    Returns:
        PIT in [0, 1] aligned with ``records`` (NaN where unsettled), named ``pit``.

    """
    names = [f"{prefix}{q}" for q in QUANTILES]
    _check_columns(records, (*names, "actual"))
    q10, q50, q90 = (records[c].to_numpy(dtype=float) for c in names)
    y = records["actual"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        above = (y - q50) / (q90 - q50)
        below = (y - q50) / (q50 - q10)
    z = _Z90 * np.where(y >= q50, above, below)
    # A zero-width side puts every outcome on it at the edge of the distribution (or the centre).
    z = np.where(y == q50, 0.0, z)
    pit = 0.5 * (1.0 + _erf(z / math.sqrt(2.0)))
    pit[~np.isfinite(y)] = np.nan
    return pd.Series(pit, index=records.index, name="pit")


def coverage_by_level(
    records: pd.DataFrame,
    levels: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95),
    *,
    prefix: str = "",
) -> pd.DataFrame:
    """Nominal against realised coverage per horizon, for a calibration plot.

    The central band at level ``p`` is the split normal's (see :func:`pit_values`): the outcome is
    inside when ``|2*PIT - 1| <= p``; at ``p = 0.8`` that is exactly the q10..q90 band.

    Args:
        records: Path records; only settled rows count.
        levels: Nominal coverages in (0, 1).
        prefix: ``""`` for the raw quantiles, ``"c_"`` for the calibrated ones.

    Returns:
        One row per horizon and level: ``horizon``, ``level``, ``n``, ``coverage``.

    """
    pit = pit_values(records, prefix=prefix)
    frame = pd.DataFrame({"horizon": records["horizon"].to_numpy(), "pit": pit.to_numpy()})
    frame = frame[np.isfinite(frame["pit"])]
    rows = []
    for h, group in frame.groupby("horizon", sort=True):
        distance = np.abs(2.0 * group["pit"].to_numpy() - 1.0)
        for level in levels:
            covered = float(np.mean(distance <= level + 1e-12))
            rows.append({"horizon": int(h), "level": float(level), "n": len(distance), "coverage": covered})
    return pd.DataFrame(rows, columns=["horizon", "level", "n", "coverage"])


def skill_statement(h: HorizonCalibration) -> str:
    """Say in plain words how much the shrunk median beats the random walk at ``h.horizon``.

    A gain that rounds to 0.0%, or whose t statistic is below :data:`MIN_SKILL_T` (the grid search
    always finds some in-sample gain, even for pure noise), is stated as no measurable skill.
    """
    days = f"{h.horizon} day" if h.horizon == 1 else f"{h.horizon} days"
    gain = 100.0 * (1.0 - h.mae_shrunk / h.mae_naive) if h.mae_naive > 0 else 0.0
    noise = h.skill_t is not None and h.skill_t < MIN_SKILL_T
    if h.shrink == 0 or round(gain, 1) <= 0 or noise:
        return f"no measurable skill over the random walk at {days} (shrink {h.shrink:.2f})"
    return f"median error {gain:.1f}% below the random walk at {days} (shrink {h.shrink:.2f})"
