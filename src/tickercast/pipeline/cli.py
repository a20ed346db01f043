"""The ``tickercast pipeline run`` command: settings, the stages table, the closing summary, then serve."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from tickercast.errors import UserError
from tickercast.pipeline.display import backtest_detail, manifest_detail, metrics_line, print_summary
from tickercast.pipeline.stages import Context, Source, StageRun, run_pipeline
from tickercast.pipeline.state import load_state, state_path


def register(app: typer.Typer) -> None:
    """Add the ``pipeline`` command group to the ``tickercast`` app."""
    pipeline_app = typer.Typer(
        help="Run every stage in order, skipping those whose inputs have not changed.", no_args_is_help=True
    )
    app.add_typer(pipeline_app, name="pipeline")

    @pipeline_app.command("run")
    def run(
        ctx: typer.Context,
        data: Annotated[
            Path, typer.Option("--data", help="Data root: raw/, curated/, MLflow store, reports.")
        ] = Path("data"),
        source: Annotated[
            Source, typer.Option(help="Raw data: the real offline sample, or the market simulator.")
        ] = Source.sample,
        devices: Annotated[
            int | None, typer.Option(min=1, help="DDP processes for training (default: train.devices, 2).")
        ] = None,
        serve: Annotated[
            bool, typer.Option("--serve/--no-serve", help="Serve the API in the foreground at the end.")
        ] = True,
        force: Annotated[
            bool, typer.Option(help="Rerun every stage, even those whose inputs are unchanged.")
        ] = False,
        host: Annotated[
            str | None, typer.Option(help="Interface the API binds (default: serve.host).")
        ] = None,
        port: Annotated[
            int | None, typer.Option(min=1, max=65535, help="API port (default: serve.port).")
        ] = None,
        tickers: Annotated[int, typer.Option(min=1, help="--source synth: number of simulated tickers.")] = 5,
        days: Annotated[
            int, typer.Option(min=1, help="--source synth: number of simulated trading days.")
        ] = 750,
        seed: Annotated[int, typer.Option(help="--source synth: simulator seed.")] = 7,
    ) -> None:
        """Run data, preprocess, train (DDP), evaluate, backtest and serve, skipping unchanged stages.

        A stage is skipped when its inputs are those of its last published output (raw file
        hashes -> curated data_version -> the model trained on it -> its backtest), as recorded in
        DIR/.pipeline/state.json; --force reruns them all. Each stage's full output goes to
        DIR/.pipeline/logs/<stage>.log. A failing stage stops the run and leaves everything
        published before it as it was. `make demo` is `pipeline run --data data --source sample --serve`.
        """
        from tickercast.config import settings_for

        started = time.monotonic()
        settings = settings_for(
            ctx, {"data_root": data, "train": {"devices": devices}, "serve": {"host": host, "port": port}}
        )
        if serve and not _port_free(settings.serve.host, settings.serve.port):
            raise UserError(
                f"port {settings.serve.port} on {settings.serve.host} is in use: stop what holds it, "
                "or pass --port or --no-serve"
            )
        try:
            settings.data_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the data root {settings.data_root}: {exc.strerror}") from None
        root_obj = ctx.find_root().obj or {}
        prefix = ["--config", str(root_obj["config_file"])] if root_obj.get("config_file") else []
        pipeline_ctx = Context(
            settings=settings,
            source=source,
            devices=settings.train.devices,
            force=force,
            synth={"tickers": tickers, "days": days, "seed": seed},
            cli_prefix=prefix,
            state=load_state(settings.data_root),
        )
        with _terminate_as_interrupt():
            runs = run_pipeline(pipeline_ctx, serve)
        _closing_summary(pipeline_ctx, runs, serve, time.monotonic() - started)
        if serve:
            _serve(pipeline_ctx)


def _port_free(host: str, port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while stages run, so the running stage's processes are stopped too."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _closing_summary(ctx: Context, runs: list[StageRun], serve: bool, seconds: float) -> None:
    """Print the curated dataset, the champion and its test metrics, then what ran and what was skipped."""
    from tickercast.train.tracking import champion_metrics, champion_model  # lazily: mlflow is slow

    lines = [f"curated   {manifest_detail(ctx.manifest)}"]
    champion = champion_model(ctx.settings)
    if champion:
        version, run_id = champion
        lines.append(f"champion  {ctx.settings.registered_model_name} v{version} (run {run_id[:8]})")
        lines.append(f"test      {metrics_line(champion_metrics(ctx.settings, run_id))}")
    backtest = ctx.results.get("backtest")
    if backtest:
        lines.append(f"backtest  tft {backtest_detail(backtest.get('tft') or [])}")
        lines.append(f"          leaderboard {ctx.data_root / backtest['leaderboard']}")
    if serve:
        lines.append(
            f"API       http://{ctx.settings.serve.host}:{ctx.settings.serve.port}  (Ctrl-C stops it)"
        )
    print_summary(
        lines,
        ran=[r.name for r in runs if r.status == "ran"],
        skipped=[r.name for r in runs if r.status == "skipped"],
        seconds=seconds,
        state_file=state_path(ctx.data_root),
    )


def _serve(ctx: Context) -> None:
    """Become ``tickercast serve`` for this data root: the API runs in the foreground until Ctrl-C.

    Replacing this process (rather than starting a child) keeps one process to stop and hands
    signals straight to uvicorn, which finishes in-flight requests on SIGTERM.
    """
    settings = ctx.settings
    command = [sys.executable, "-m", "tickercast", *ctx.cli_prefix, "serve", "--data", str(ctx.data_root)]
    command += ["--host", settings.serve.host, "--port", str(settings.serve.port)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)
