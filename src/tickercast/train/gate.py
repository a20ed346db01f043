"""The promotion gate on the backtest: candidate and champion walked forward over the same unseen origins.

Both models forecast every horizon from each of the candidate's held-out origins (its test window),
get their band calibrated online (each origin's calibration fitted on that model's own forecasts
settled by then, :func:`tickercast.model.calibration.calibrate_online`, so neither uses an outcome
from its future and neither carries a calibration fitted on the window it is scored on), and are
scored with the backtest's metrics (:mod:`tickercast.train.metrics`) on the rows both and the
random walk (:func:`tickercast.train.baselines.naive`) forecast. The candidate is promoted when its
mean scaled CRPS across horizons is no worse than the champion's and its mean MAE relative to the
random walk is not worse by more than :data:`MAE_VS_NAIVE_TOLERANCE`.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from tickercast.train import metrics
from tickercast.train.baselines import closes, naive, origin_rows
from tickercast.train.registry import GateDecision

if TYPE_CHECKING:
    from tickercast.model.bundle import ModelBundle

log = logging.getLogger(__name__)

CANDIDATE = "candidate"
CHAMPION = "champion"
# Relative: a candidate trained on newer data replaces a champion of the same quality; half a
# percent of scaled CRPS is well inside the noise of one test window.
SCALED_CRPS_TOLERANCE = 0.005
# Absolute, in units of the random walk's MAE (one percentage point).
MAE_VS_NAIVE_TOLERANCE = 0.01


@dataclass(frozen=True)
class GateScore:
    """One model's figures on the gate's rows, averaged over horizons (each horizon weighs the same)."""

    scaled_crps: float
    mae_vs_naive: float
    mae: float
    n: int


@dataclass(frozen=True)
class GateBoard:
    """Both models' figures, on which origins and horizons they were computed."""

    candidate: GateScore
    champion: GateScore
    origins: list[dt.date]
    horizon: int
    table: pd.DataFrame


def learnt_through(metadata: Mapping[str, Any]) -> tuple[dt.date, str] | None:
    """Return the last date a bundle's training could have seen, and the metadata field that says so.

    ``trained_through`` (the last date of the training and validation rows) wins; bundles without it
    saw every date before their test window (``split.test_start``): training and early stopping
    used them.

    Returns:
        ``(date, field)`` or ``None`` when the metadata says neither.

    """
    through = metadata.get("trained_through")
    if through:
        return dt.date.fromisoformat(str(through)[:10]), "trained_through"
    start = (metadata.get("split") or {}).get("test_start")
    if start:
        return dt.date.fromisoformat(str(start)[:10]) - dt.timedelta(days=1), "split.test_start"
    return None


def seen_through(metadata: Mapping[str, Any]) -> dt.date | None:
    """Return the last date a bundle learnt from (:func:`learnt_through` without the field name)."""
    learnt = learnt_through(metadata)
    return learnt[0] if learnt else None


def unseen_origins(origins: Sequence[dt.date], seen: dt.date | None) -> list[dt.date]:
    """Return the origins from which a model that learnt from rows through ``seen`` forecasts out of sample.

    An origin on the last seen day still qualifies: every target it forecasts lies after it.
    Without a date (old metadata) no origin can be trusted.
    """
    if seen is None:
        return []
    return [o for o in origins if o >= seen]


def calibrated_records(records: pd.DataFrame, name: str) -> pd.DataFrame:
    """Rename one model's path records to ``name`` and add its online-calibrated band (``c_q*``)."""
    from tickercast.model.calibration import calibrate_online

    out = calibrate_online(records.assign(model=name).reset_index(drop=True))
    return out.drop(columns=["calibrated"])


def score_gate(
    candidate: pd.DataFrame,
    champion: pd.DataFrame,
    curated: pd.DataFrame,
    origins: Sequence[dt.date],
    horizon: int,
) -> GateBoard:
    """Score the two models' walk-forward records against the random walk on the same rows.

    Args:
        candidate: The candidate's raw path records (any ``model`` name) over ``origins``.
        champion: The champion's raw path records over ``origins``.
        curated: Curated rows of all symbols (the truth and the random walk's history).
        origins: The origins both were walked from.
        horizon: Largest horizon compared (records above it are left out).

    Returns:
        Per-model figures averaged over horizons 1..``horizon`` and the per-horizon table.

    Raises:
        ValueError: No origin has a settled forecast from both models and the random walk.

    """
    wanted = set(origins)
    skeleton = origin_rows(curated, sorted(wanted), horizon)

    def with_truth(records: pd.DataFrame) -> pd.DataFrame:
        # Every model gets the same truth from the data: close at the origin, vol, actual.
        forecasts = records[["model", *metrics.KEY, *metrics.QUANTILE_COLUMNS]]
        return forecasts.merge(skeleton, on=list(metrics.KEY), how="inner")

    parts = []
    for name, records in ((CANDIDATE, candidate), (CHAMPION, champion)):
        mine = records[records["origin"].isin(wanted) & (records["horizon"] <= horizon)]
        parts.append(calibrated_records(with_truth(mine), name))
    parts.append(with_truth(naive(curated, sorted(wanted), horizon)))
    rows = metrics.common_rows(metrics.effective_quantiles(pd.concat(parts, ignore_index=True)))
    if rows.empty:
        raise ValueError("no origin has a settled forecast from the candidate, the champion and naive")
    scales = metrics.naive_scales(closes(curated), sorted(wanted), horizon)
    rows = rows.merge(scales, on=list(metrics.KEY), how="left")
    table = metrics.score(rows, ("horizon",))

    def figures(name: str) -> GateScore:
        mine = table[table["model"] == name]
        return GateScore(
            scaled_crps=float(mine["scaled_crps"].mean()),
            mae_vs_naive=float(mine["mae_vs_naive"].mean()),
            mae=float(mine["mae"].mean()),
            n=int(mine["n"].sum()),
        )

    return GateBoard(
        candidate=figures(CANDIDATE),
        champion=figures(CHAMPION),
        origins=sorted(set(rows["origin"])),
        horizon=int(rows["horizon"].max()),
        table=table,
    )


def _span(board: GateBoard) -> str:
    return (
        f"{len(board.origins)} held-out origin(s) {board.origins[0]} .. {board.origins[-1]}, "
        f"horizons 1..{board.horizon}"
    )


def decide(board: GateBoard, champion_version: str, note: str = "") -> GateDecision:
    """Promote when the candidate's scaled CRPS and MAE vs naive are no worse than the champion's.

    Args:
        board: Both models' figures on the same rows.
        champion_version: The champion's version (for the reason).
        note: A sentence put before the reason (e.g. which origins were left out and why).

    Returns:
        The decision, its figures and a reason that states them.

    """
    cand, champ = board.candidate, board.champion
    figures = {
        "candidate_mae": cand.mae,
        "champion_mae": champ.mae,
        "candidate_scaled_crps": cand.scaled_crps,
        "champion_scaled_crps": champ.scaled_crps,
        "candidate_mae_vs_naive": cand.mae_vs_naive,
        "champion_mae_vs_naive": champ.mae_vs_naive,
    }
    said = (
        f"on the backtest over {_span(board)}: scaled CRPS {cand.scaled_crps:.4f} vs champion "
        f"v{champion_version}'s {champ.scaled_crps:.4f}, MAE vs naive {cand.mae_vs_naive:.3f} vs "
        f"{champ.mae_vs_naive:.3f}"
    )
    prefix = f"{note}; " if note else ""
    if not (math.isfinite(cand.scaled_crps) and math.isfinite(cand.mae_vs_naive)):
        return GateDecision(
            False,
            champion_version=champion_version,
            reason=f"{prefix}the candidate's figures are not finite ({said})",
            **figures,
        )
    if not (math.isfinite(champ.scaled_crps) and math.isfinite(champ.mae_vs_naive)):
        return GateDecision(
            True,
            champion_version=champion_version,
            reason=f"{prefix}champion v{champion_version} could not be scored ({said})",
            **figures,
        )
    crps_ok = cand.scaled_crps <= champ.scaled_crps * (1 + SCALED_CRPS_TOLERANCE)
    mae_ok = cand.mae_vs_naive <= champ.mae_vs_naive + MAE_VS_NAIVE_TOLERANCE
    if crps_ok and mae_ok:
        reason = f"{prefix}no worse than champion v{champion_version} {said}"
        return GateDecision(True, champion_version=champion_version, reason=reason, **figures)
    worse = []
    if not crps_ok:
        worse.append(f"scaled CRPS more than {SCALED_CRPS_TOLERANCE:.1%} above the champion's")
    if not mae_ok:
        worse.append(f"MAE vs naive more than {MAE_VS_NAIVE_TOLERANCE:.2f} above the champion's")
    reason = f"{prefix}{said}: {' and '.join(worse)}, champion kept"
    return GateDecision(False, champion_version=champion_version, reason=reason, **figures)


def backtest_gate(
    candidate_records: pd.DataFrame,
    champion: ModelBundle,
    champion_version: str,
    curated: pd.DataFrame,
    origins: Sequence[dt.date],
    horizon: int,
) -> GateDecision | None:
    """Walk the champion over the candidate's held-out origins it has not seen and decide.

    Args:
        candidate_records: The candidate's raw walk-forward records over ``origins``.
        champion: The champion's bundle.
        champion_version: Its registered version.
        curated: Curated rows of all symbols.
        origins: The candidate's held-out origins.
        horizon: The candidate's horizon.

    Returns:
        The decision, or ``None`` when the champion saw every origin (or its metadata does not say
        what it saw): the caller falls back to the one-window rule.

    """
    from tickercast.model.inference import walk_forward

    seen = seen_through(champion.metadata)
    usable = unseen_origins(origins, seen)
    if not usable:
        return None
    note = ""
    if len(usable) < len(origins):
        note = (
            f"champion v{champion_version} learnt from data through {seen}, after the first "
            f"{len(origins) - len(usable)} of the candidate's held-out origins, which are left out"
        )
    common = min(horizon, champion.horizon)
    champion_records = walk_forward(champion, curated, usable, common)
    board = score_gate(candidate_records, champion_records, curated, usable, common)
    log.info(
        "gate: candidate scaled CRPS %.4f, MAE vs naive %.3f; champion v%s %.4f, %.3f",
        board.candidate.scaled_crps,
        board.candidate.mae_vs_naive,
        champion_version,
        board.champion.scaled_crps,
        board.champion.mae_vs_naive,
    )
    return decide(board, champion_version, note)
