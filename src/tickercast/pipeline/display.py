"""What ``pipeline run`` shows: one progress line per stage while it runs, and the closing summary."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from tickercast.console import console, summary

if TYPE_CHECKING:
    from tickercast.manifest import CuratedManifest

_MARKS = {
    "ran": "[green]✔[/]",
    "skipped": "[blue]↷ skipped[/]",
    "off": "[dim]–[/]",
    "failed": "[red]✘[/]",
}


@contextlib.contextmanager
def progress_display(stages: list[str]) -> Iterator[Callable[[str, str, str], None]]:
    """Show one progress display across stages; yields ``update(stage, status, detail)``.

    ``status`` is ``running`` (the detail is the stage's latest output line) or how it ended:
    ``ran``, ``skipped``, ``off`` or ``failed``. Stages not reached when an error leaves the
    display are marked "not run".

    Args:
        stages: The stage names, in order.

    Yields:
        The update function.

    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Column
    from rich.text import Text

    class _Spinner(SpinnerColumn):
        def render(self, task: Any) -> Any:  # a spinner only for the stage at work
            return super().render(task) if task.started else Text(" ")

    progress = Progress(
        _Spinner(finished_text=" "),
        TextColumn("[bold]{task.fields[stage]}", table_column=Column(no_wrap=True, min_width=10)),
        TimeElapsedColumn(table_column=Column(no_wrap=True, min_width=7)),
        TextColumn(
            "{task.fields[mark]} {task.fields[detail]}",
            markup=True,
            table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1),
        ),
        console=console,
        transient=False,
        expand=True,
    )
    tasks = {
        name: progress.add_task(
            name, total=1, start=False, stage=name, mark="[dim]·[/]", detail="[dim]waiting[/]"
        )
        for name in stages
    }

    def update(stage: str, status: str, detail: str) -> None:
        task = tasks[stage]
        progress.start_task(task)
        if status == "running":
            progress.update(task, mark="[cyan]»[/]", detail=_trim(detail))
            return
        progress.update(task, completed=1, mark=_MARKS.get(status, ""), detail=_trim(detail, 110))
        progress.stop_task(task)

    with progress:
        try:
            yield update
        except BaseException:
            for stage, task_id in tasks.items():
                if not progress.tasks[task_id].started:
                    update(stage, "off", "not run")
            raise


def _trim(text: str, width: int = 90) -> str:
    from rich.markup import escape

    text = " ".join(text.split())
    return escape(text if len(text) <= width else text[: width - 1] + "…")


def manifest_detail(manifest: CuratedManifest | None) -> str:
    """Describe a curated dataset in one line: its data_version, rows written and rows quarantined."""
    if manifest is None:
        return "data_version None"
    return (
        f"data_version {manifest.data_version[:12]}, {manifest.counts.written:,} rows, "
        f"{manifest.counts.quarantined:,} quarantined"
    )


def metrics_line(metrics: dict[str, float]) -> str:
    """Describe the champion's test metrics in one line: MAE against the naive forecast, coverage.

    The coverage is the raw band's on the test window, then the calibrated band's (the one served).
    """
    mae = metrics.get("mae")
    naive = next((metrics[k] for k in ("naive_mae", "mae_naive") if k in metrics), None)
    if mae is None:
        return ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())) or "no test metrics logged"
    text = f"MAE {mae:.4f} vs naive {naive:.4f}" if naive is not None else f"MAE {mae:.4f}"
    if naive:
        text += f" ({(mae / naive - 1) * 100:+.1f}%)"
    oracle = metrics.get("oracle_mae")
    if oracle is not None:
        text += f", oracle {oracle:.4f}"
    coverage = metrics.get("coverage") or metrics.get("coverage_p10_p90")
    calibrated = metrics.get("coverage_calibrated")
    if coverage is not None:
        text += f", P10–P90 coverage {coverage:.0%}"
        if calibrated is not None:
            text += f" raw, {calibrated:.0%} calibrated"
    return text


def backtest_detail(rows: list[dict[str, Any]]) -> str:
    """Describe the champion's backtest in one line: scaled CRPS (naive's) and MAE vs naive per horizon.

    Args:
        rows: The ``tft`` leaderboard rows kept by the backtest stage (``horizon``, ``scaled_crps``,
            ``mae_vs_naive``, ``naive_scaled_crps``), typically h = 1 and the largest horizon.

    Returns:
        E.g. ``h1 sCRPS 0.612 (naive 0.630), MAE/naive 0.998; h5 sCRPS ...``.

    """
    if not rows:
        return "no tft row in the leaderboard"

    def number(value: Any, fmt: str) -> str:
        return "n/a" if value is None else format(float(value), fmt)

    parts = []
    for row in sorted(rows, key=lambda r: int(r["horizon"])):
        naive = row.get("naive_scaled_crps")
        text = f"h{row['horizon']} sCRPS {number(row.get('scaled_crps'), '.3f')}"
        text += f" (naive {number(naive, '.3f')})" if naive is not None else ""
        parts.append(f"{text}, MAE/naive {number(row.get('mae_vs_naive'), '.3f')}")
    return "; ".join(parts)


def print_summary(
    lines: list[str], ran: list[str], skipped: list[str], seconds: float, state_file: Any
) -> None:
    """Print the closing summary: the given detail lines, then which stages ran and which were skipped.

    Args:
        lines: Detail lines (curated dataset, champion, test metrics, API address), printed indented.
        ran: Stages that ran.
        skipped: Stages that were skipped.
        seconds: How long the pipeline took.
        state_file: Where the state was recorded.

    """
    for line in lines:
        console.print(f"  {line}", highlight=False)
    summary(
        f"pipeline done in {seconds:.0f}s: ran {', '.join(ran) or 'nothing'}; "
        f"skipped {', '.join(skipped) or 'nothing'} (state: {state_file})"
    )
