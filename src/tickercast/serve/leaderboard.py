"""The latest backtest for the dashboard: one reader of ``DIR/reports/backtest/latest.json``.

``tickercast backtest`` rewrites ``latest.json`` atomically once a run's folder is complete; it
names the run's folder and carries its leaderboard, so the service never lists folders. The
report's PNGs are served from that folder only under names of a fixed pattern that the file also
lists, so no request path becomes an arbitrary file path.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tickercast.serve import schemas

BACKTEST_DIR = "backtest"
LATEST = "latest.json"
# The latest.json layout this reader understands (the backtest report writes the same number).
FORMAT = 1
# Run folders are UTC stamps, with a suffix when two runs start in the same second.
RUN_NAME = re.compile(r"^[0-9]{8}-[0-9]{6}(-[0-9]{1,4})?$")
# Every plot a backtest report may hold; anything else is never served.
PLOT_NAME = re.compile(r"^(scaled_crps|calibration|pit|cone|coverage_h[0-9]{1,2})\.png$")
PLOTS_URL = "/backtest/plots"
NO_BACKTEST = "no backtest has run on this data yet: `tickercast backtest --data DIR` writes one"


class BacktestUnavailable(Exception):
    """There is no readable latest backtest; the message says why, for a person."""


class PlotRef(BaseModel):
    """A plot listed in ``latest.json``."""

    name: str
    title: str


class LatestBacktest(BaseModel):
    """The contents of ``latest.json`` (written by the backtest report)."""

    model_config = ConfigDict(extra="ignore")

    format: int
    run: str = Field(pattern=RUN_NAME.pattern)
    created_at: datetime.datetime
    data_version: str | None = None
    horizon: int
    horizons: list[int]
    origins: schemas.BacktestOrigins
    models: list[str]
    subject: str | None = None
    champion: str | None = None
    skill: dict[int, str] = Field(default_factory=dict)
    report: str | None = None
    plots: list[PlotRef] = Field(default_factory=list)
    leaderboard: list[schemas.LeaderboardRow]


def latest_path(reports_dir: Path) -> Path:
    """Return where ``latest.json`` lives under the reports folder."""
    return reports_dir / BACKTEST_DIR / LATEST


def read_latest(reports_dir: Path) -> LatestBacktest:
    """Read and check ``latest.json``.

    Args:
        reports_dir: ``DIR/reports``.

    Returns:
        The latest backtest.

    Raises:
        BacktestUnavailable: The file is missing, unreadable or of another format.

    """
    path = latest_path(reports_dir)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise BacktestUnavailable(NO_BACKTEST) from None
    except OSError as exc:
        raise BacktestUnavailable(f"the latest backtest cannot be read ({exc.strerror})") from None
    try:
        latest = LatestBacktest.model_validate_json(text)
    except ValidationError as exc:
        raise BacktestUnavailable(
            f"the latest backtest summary is malformed ({exc.error_count()} problem(s)); "
            "run `tickercast backtest` again"
        ) from None
    if latest.format != FORMAT:
        raise BacktestUnavailable(
            f"the latest backtest summary has format {latest.format}, this service reads format {FORMAT}; "
            "run `tickercast backtest` with this version"
        )
    return latest


def leaderboard(latest: LatestBacktest) -> schemas.Backtest:
    """Shape the latest backtest for the API: one ranked table per horizon, the champion marked.

    Plots are listed only where their name is one the service serves.
    """
    horizons = sorted({row.horizon for row in latest.leaderboard})
    tables = [
        schemas.HorizonLeaderboard(
            horizon=h,
            skill=latest.skill.get(h),
            rows=sorted((r for r in latest.leaderboard if r.horizon == h), key=lambda r: (r.rank, r.model)),
        )
        for h in horizons
    ]
    plots = [
        schemas.BacktestPlot(name=p.name, title=p.title, url=f"{PLOTS_URL}/{p.name}")
        for p in latest.plots
        if PLOT_NAME.match(p.name)
    ]
    return schemas.Backtest(
        run=latest.run,
        created_at=latest.created_at,
        data_version=latest.data_version,
        origins=latest.origins,
        horizon=max(horizons, default=latest.horizon),
        subject=latest.subject,
        champion=latest.champion,
        models=latest.models,
        horizons=tables,
        plots=plots,
    )


def plot_file(reports_dir: Path, name: str) -> Path:
    """Return the PNG ``name`` of the latest run, if it is a report plot that run lists and holds.

    Args:
        reports_dir: ``DIR/reports``.
        name: The file name asked for.

    Returns:
        The file's path.

    Raises:
        BacktestUnavailable: No latest backtest.
        FileNotFoundError: Not a plot of the latest run (the message says which exist).

    """
    latest = read_latest(reports_dir)
    listed = [p.name for p in latest.plots if PLOT_NAME.match(p.name)]
    if not PLOT_NAME.match(name) or name not in listed:
        raise FileNotFoundError(
            f"no plot {name[:40]!r} in the latest backtest; it has {', '.join(listed) or 'none'}"
        )
    path = reports_dir / BACKTEST_DIR / latest.run / name
    if not path.is_file():
        raise FileNotFoundError(f"the latest backtest lists {name} but its file is gone")
    return path
