"""Fit a trained model's conformal layer and skill shrinkage on its held-out walk-forward residuals."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pandas as pd

from tickercast.model.calibration import Calibration, fit_calibration, skill_statement
from tickercast.model.inference import walk_forward

if TYPE_CHECKING:
    from tickercast.model.bundle import ModelBundle
    from tickercast.train.dataset import Split


def held_out_origins(frame: pd.DataFrame, split: Split) -> list[dt.date]:
    """Origins whose forecasts all fall in the test window: its dates and the day before it.

    Args:
        frame: Model rows (``date``, ``time_idx``).
        split: The training split.

    Returns:
        The origin dates, ascending (the last date is left out: nothing follows it).

    """
    dates = frame.loc[frame["time_idx"] >= split.test_start_idx - 1, "date"]
    ordered = sorted(pd.Timestamp(d).date() for d in dates.unique())
    return ordered[:-1]


def calibrate(
    bundle: ModelBundle, curated: pd.DataFrame, origins: list[dt.date], *, coverage: float = 0.8
) -> tuple[Calibration, pd.DataFrame]:
    """Walk the model forward over ``origins`` and fit its calibration on the settled forecasts.

    Args:
        bundle: The trained model (its training never saw the origins' outcomes).
        curated: Curated rows of all symbols.
        origins: The held-out origin dates.
        coverage: The band's nominal coverage.

    Returns:
        The calibration and the walk-forward records it was fitted on.

    """
    records = walk_forward(bundle, curated, origins)
    return fit_calibration(records, coverage=coverage), records


def calibration_summary(calibration: Calibration) -> dict[str, dict[str, float | str]]:
    """Per horizon: the shrink factor, the band's coverage before and after, and the skill in words."""
    summary: dict[str, dict[str, float | str]] = {}
    for horizon, h in sorted(calibration.horizons.items()):
        summary[str(horizon)] = {
            "shrink": h.shrink,
            "coverage_raw": h.coverage_raw,
            "coverage_calibrated": h.coverage_calibrated,
            "mae_vs_naive": h.mae_shrunk / h.mae_naive if h.mae_naive > 0 else float("nan"),
            "n": h.n,
            "skill": skill_statement(h),
        }
    return summary
