"""The ``tickercast preprocess`` command."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from tickercast.preprocess.job import JobResult

_MAX_REASONS = 20
# PySpark warns on every pandas 3 import although the APIs the job uses work; keep the screen clean.
PANDAS_WARNING = "PySpark does not yet fully support pandas"


def quiet_pyspark_warnings() -> None:
    """Hide PySpark's pandas-version FutureWarning in command output (entry points only)."""
    import warnings

    warnings.filterwarnings("ignore", message=PANDAS_WARNING, category=FutureWarning)


def print_summary(result: JobResult) -> None:
    """Print the one-screen summary of a run: counts, quarantine reasons, output, time taken.

    Args:
        result: What :func:`tickercast.preprocess.job.run_job` returned.

    """
    from rich.table import Table
    from rich.text import Text

    from tickercast.console import console, summary

    counts = Table(title=f"preprocess run {result.run_id} ({result.mode})", title_justify="left")
    counts.add_column("input")
    for name in ("read", "valid", "duplicates", "quarantined"):
        counts.add_column(name, justify="right")
    for kind, c in sorted(result.counts_by_kind.items()):
        counts.add_row(kind, *(f"{c[k]:,}" for k in ("read", "valid", "duplicates", "quarantined")))
    total = result.counts
    counts.add_row(
        "[bold]all[/]", *(f"[bold]{total[k]:,}[/]" for k in ("read", "valid", "duplicates", "quarantined"))
    )
    console.print(counts)
    if result.reasons:
        reasons = Table(title="quarantine reasons", title_justify="left")
        reasons.add_column("reason")
        reasons.add_column("rows", justify="right")
        for reason, n in list(result.reasons.items())[:_MAX_REASONS]:
            reasons.add_row(Text(reason), f"{n:,}")
        if len(result.reasons) > _MAX_REASONS:
            reasons.add_row(f"... {len(result.reasons) - _MAX_REASONS} more (see the quarantine dataset)", "")
        console.print(reasons)
    for warning in result.warnings[:_MAX_REASONS]:
        console.print(Text.assemble(("warning: ", "yellow"), warning))
    if len(result.warnings) > _MAX_REASONS:
        console.print(f"... {len(result.warnings) - _MAX_REASONS} more warnings in the manifest")
    manifest = result.manifest
    console.print(
        f"quarantine: {result.quarantine_dir}  manifest: {result.manifest_path}  "
        f"data_version: {manifest.data_version}",
        highlight=False,
    )
    n_symbols = len(manifest.symbols)
    summary(
        f"wrote {total['written']:,} rows for {n_symbols} symbol{'s' if n_symbols != 1 else ''} "
        f"to {result.features_dir} in {result.duration_s:.1f}s"
    )


def register(app: typer.Typer) -> None:
    """Add the ``preprocess`` command to the ``tickercast`` app."""

    @app.command("preprocess")
    def preprocess(
        ctx: typer.Context,
        data: Annotated[
            Path | None,
            typer.Option("--data", help="Data root: reads DIR/raw, writes DIR/curated and DIR/quarantine."),
        ] = None,
        master: Annotated[
            str | None,
            typer.Option(
                help="Spark master URL: local[*] (default), spark://host:7077 or k8s://https://host."
            ),
        ] = None,
        full: Annotated[
            bool, typer.Option("--full", help="Recompute every row instead of only what new input affects.")
        ] = False,
        max_bad_fraction: Annotated[
            float | None,
            typer.Option(
                min=0.0,
                max=1.0,
                help="Fail and publish nothing when more than this share of input rows is bad (default 0.05)",
            ),
        ] = None,
    ) -> None:
        """Validate raw CSVs and build the curated feature dataset with Spark (published atomically)."""
        from tickercast.config import settings_for
        from tickercast.preprocess.job import run_job

        quiet_pyspark_warnings()
        overrides = {"data_root": data, "spark": {"master": master, "max_bad_fraction": max_bad_fraction}}
        settings = settings_for(ctx, overrides)
        print_summary(run_job(settings, full=full))
