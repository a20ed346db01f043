"""The ``tickercast`` command: one sub-command (group) per stage.

Each stage registers its own commands from ``tickercast.<stage>.cli.register`` so that this file
stays a table of contents. Stage modules import heavy libraries (Spark, torch) inside the command
functions, so ``tickercast --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tickercast.config import ConfigError, setting_sources, settings_for
from tickercast.console import configure_logging, console
from tickercast.errors import UserError

app = typer.Typer(
    name="tickercast",
    help=(
        "Forecast next-day stock prices: raw CSVs -> Spark features -> a Temporal Fusion "
        "Transformer trained with DDP and tracked in MLflow -> a FastAPI service.\n\n"
        "Start with `tickercast pipeline run` (what `make demo` does), or run the stages one by one: "
        "`data`, `preprocess`, `train`, `evaluate`, `serve`."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Inspect the effective settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="YAML settings file (also $TICKERCAST_CONFIG); TICKERCAST_* and flags win over it.",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="Logging level: DEBUG, INFO, WARNING, ERROR.")] = "INFO",
) -> None:
    """Set up logging and remember the settings file for the sub-command."""
    configure_logging(log_level)
    ctx.obj = {"config_file": config}


@config_app.command("show")
def config_show(
    ctx: typer.Context,
    data: Annotated[Path | None, typer.Option("--data", help="Data root to show settings for.")] = None,
) -> None:
    """Print every effective setting and where its value came from (flag, env, YAML file or default)."""
    overrides = {"data_root": data}
    settings = settings_for(ctx, overrides)
    table = Table(title="tickercast settings", show_lines=False)
    table.add_column("setting")
    table.add_column("value")
    table.add_column("source")
    config_file = (ctx.find_root().obj or {}).get("config_file")
    for key, value, source in setting_sources(settings, config_file, overrides):
        table.add_row(key, str(value), source)
    table.add_row("(derived) tracking_uri", settings.tracking_uri, "computed")
    table.add_row("(derived) features_dir", str(settings.features_dir), "computed")
    typer.echo(_render(table))


def _render(table: Table) -> str:
    from rich.console import Console

    capture = Console(width=140, record=True)
    with capture.capture() as captured:
        capture.print(table)
    return captured.get()


def _register_stages() -> None:
    from tickercast.data import cli as data_cli
    from tickercast.pipeline import cli as pipeline_cli
    from tickercast.preprocess import cli as preprocess_cli
    from tickercast.serve import cli as serve_cli
    from tickercast.train import cli as train_cli

    for module in (data_cli, preprocess_cli, train_cli, serve_cli, pipeline_cli):
        module.register(app)


_register_stages()


def main() -> None:
    """Run the CLI; user-facing errors become one line on stderr and a non-zero exit code."""
    try:
        app()
    except (UserError, ConfigError) as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        sys.exit(130)
