"""Commands of the training stage: ``train``, ``evaluate``, ``tune`` and ``backtest``."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer


def _quiet_libraries() -> None:
    """Keep the terminal for our own output.

    Lightning's banners and known pytorch-forecasting warnings about its own hyper-parameter saving
    are noise for a user.
    """
    import logging
    import warnings

    # Both set up their own loggers on import; quieten them afterwards.
    import lightning.pytorch  # noqa: F401
    import mlflow  # noqa: F401

    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r"Attribute '(loss|logging_metrics)' is an instance")
    warnings.filterwarnings(
        "ignore", message=r".*(LeafSpec|does not have many workers|Checkpoint directory).*"
    )
    warnings.filterwarnings("ignore", message=r".*(unknown|Found \d+ unknown) (classes|categor).*")


DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Data root holding curated/ (and mlflow.db, checkpoints/, reports/).",
        show_default=False,
    ),
]


def train_command(
    ctx: typer.Context,
    data: DataOption = None,
    devices: Annotated[
        int | None,
        typer.Option(
            min=1, help="Processes (CPU) or GPUs per node; above 1 trains with DDP.", show_default=False
        ),
    ] = None,
    num_nodes: Annotated[
        int | None,
        typer.Option(
            "--num-nodes", min=1, help="Nodes taking part (start each with torchrun).", show_default=False
        ),
    ] = None,
    params: Annotated[
        Path | None,
        typer.Option(
            "--params",
            help="YAML file of model hyper-parameters (default configs/tft.yaml).",
            show_default=False,
        ),
    ] = None,
    max_epochs: Annotated[
        int | None,
        typer.Option(
            "--max-epochs",
            min=1,
            help="Upper bound on epochs (early stopping may end sooner).",
            show_default=False,
        ),
    ] = None,
    accelerator: Annotated[
        str | None, typer.Option(help="Lightning accelerator: auto, cpu or gpu.", show_default=False)
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue the latest run from its last checkpoint, in the same MLflow run."
        ),
    ] = False,
    through: Annotated[
        datetime | None,
        typer.Option(
            "--through",
            formats=["%Y-%m-%d"],
            help="Learn only from curated rows dated on or before this day (YYYY-MM-DD), e.g. to "
            "backtest the model on the days after it.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train the Temporal Fusion Transformer, evaluate, register and maybe promote it.

    The new version becomes `champion` only when its test MAE is no worse than the current
    champion's on the same test window.

    With --devices N > 1 this process starts the other N-1 DDP processes itself. For several nodes,
    start one `torchrun --nnodes M ... -m tickercast train --num-nodes M` per node.
    """
    from tickercast.config import settings_for
    from tickercast.console import console, summary
    from tickercast.train.fit import train

    _quiet_libraries()
    overrides = {
        "data_root": data,
        "train": {
            "devices": devices,
            "num_nodes": num_nodes,
            "params_file": params,
            "max_epochs": max_epochs,
            "accelerator": accelerator,
        },
    }
    settings = settings_for(ctx, overrides)
    result = train(settings, resume=resume, through=through.date() if through else None)
    if result.rank != 0:
        return
    m = result.test_metrics
    console.print(
        f"test MAE {m['mae']:.4f} vs naive {m['naive_mae']:.4f} (skill {m['skill_vs_naive']:+.2%}), "
        f"P10–P90 coverage {m['coverage_p10_p90']:.0%}; report {result.report_path}",
        highlight=False,
    )
    summary(
        f"run {result.run_id}: {settings.registered_model_name} v{result.model_version} "
        f"{'promoted to champion' if result.promoted else 'registered, champion kept'} "
        f"({result.gate_reason}); bundle {result.bundle_dir}"
    )


def evaluate_command(
    ctx: typer.Context,
    data: DataOption = None,
    model_uri: Annotated[
        str | None,
        typer.Option(
            "--model-uri",
            help="models:/NAME@ALIAS, models:/NAME/VERSION or a bundle folder (default: the champion).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Evaluate a model on the test split of the current curated data against the naive forecast."""
    from tickercast.config import settings_for
    from tickercast.console import console, summary
    from tickercast.train.evaluate import run_evaluation

    _quiet_libraries()
    settings = settings_for(ctx, {"data_root": data})
    result = run_evaluation(settings, model_uri)
    m = result.metrics
    console.print(
        f"test MAE {m['mae']:.4f} vs naive {m['naive_mae']:.4f} (skill {m['skill_vs_naive']:+.2%}), "
        f"RMSE {m['rmse']:.4f}, MAPE {m['mape']:.2f}%, pinball {m['pinball']:.4f}, "
        f"P10–P90 coverage {m['coverage_p10_p90']:.0%}",
        highlight=False,
    )
    summary(f"evaluated {result.context['model']}: report {result.context['report']}")


def tune_command(
    ctx: typer.Context,
    data: DataOption = None,
    trials: Annotated[int, typer.Option(min=1, help="Number of Optuna trials to run now.")] = 10,
    timeout: Annotated[
        float | None,
        typer.Option(min=1, help="Stop starting trials after this many seconds.", show_default=False),
    ] = None,
    max_epochs: Annotated[
        int | None,
        typer.Option(
            "--max-epochs",
            min=1,
            help="Epochs per trial (default: the training setting).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            help="Where to write the best parameters (default DIR/tuning/best_params.yaml).",
            show_default=False,
        ),
    ] = None,
    study: Annotated[
        str, typer.Option(help="Study name in DIR/tuning/optuna.db (rerun to continue it).")
    ] = "tickercast-tft",
) -> None:
    """Search hyper-parameters with Optuna (TPE sampler, median pruner); write the best as a params YAML."""
    from tickercast.config import settings_for
    from tickercast.console import summary
    from tickercast.train.tune import tune

    _quiet_libraries()
    settings = settings_for(ctx, {"data_root": data, "train": {"max_epochs": max_epochs}})
    result = tune(settings, trials=trials, timeout=timeout, output=output, study_name=study)
    summary(
        f"{result.trials} trial(s) in study {result.study_name}; best val loss {result.best_value:.6f}; "
        f"params {result.params_path} (use: tickercast train --params {result.params_path})"
    )


def backtest_command(
    ctx: typer.Context,
    data: DataOption = None,
    model_uri: Annotated[
        str | None,
        typer.Option(
            "--model-uri",
            help="The TFT to evaluate: models:/NAME@ALIAS, models:/NAME/VERSION or a bundle folder "
            "(default: the champion). It must have been trained on data before the first origin.",
            show_default=False,
        ),
    ] = None,
    origins: Annotated[
        int | None,
        typer.Option(
            "--origins",
            min=1,
            help="Number of forecast origins (the last N, spaced --step apart). Default: 60, or as "
            "many as fit after the data the evaluated TFT was trained on.",
            show_default=False,
        ),
    ] = None,
    step: Annotated[int, typer.Option("--step", min=1, help="Trading days between origins.")] = 5,
    horizon: Annotated[
        int | None,
        typer.Option(
            "--horizon",
            min=1,
            max=20,
            help="Forecast 1..H trading days ahead (default: the TFT's horizon; 5 without a TFT).",
            show_default=False,
        ),
    ] = None,
    refit_every: Annotated[
        int | None,
        typer.Option(
            "--refit-every",
            min=1,
            help="Train a TFT on the data before every M-th origin instead of loading one "
            "(slow; M >= --origins trains once before the first origin).",
            show_default=False,
        ),
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(
            "--models",
            help="Comma-separated models: tft, naive, drift, auto_ets, auto_arima, lightgbm "
            "(default all; naive always runs).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Walk-forward backtest of the TFT against the baseline leaderboard on rolling origins.

    Every model forecasts 1..H trading days ahead from each origin using only rows dated up to the
    origin; the run writes DIR/reports/backtest/<run>/ (leaderboard.json, report.md,
    records.parquet, plots) and logs it to MLflow as a run of kind backtest.
    """
    from tickercast.config import settings_for
    from tickercast.console import console, summary
    from tickercast.train.backtest import run_backtest
    from tickercast.train.backtest_report import subject_model

    _quiet_libraries()
    settings = settings_for(ctx, {"data_root": data})
    result = run_backtest(
        settings,
        model_uri=model_uri,
        origins=origins,
        step=step,
        horizon=horizon,
        refit_every=refit_every,
        models=models,
    )
    from rich.table import Table

    table = Table(title=f"backtest: {len(result.origins)} origins, ranked by scaled CRPS per horizon")
    for column in ("h", "#", "model", "n", "sCRPS", "MAE/naive", "90% interval", "cov80", "width"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in result.leaderboard.to_dict("records"):
        table.add_row(
            str(row["horizon"]),
            str(row["rank"]),
            row["model"] + (" ★" if row.get("champion") else ""),
            str(row["n"]),
            f"{row['scaled_crps']:.4f}",
            f"{row['mae_vs_naive']:.3f}",
            f"{row['mae_vs_naive_lo']:.3f}–{row['mae_vs_naive_hi']:.3f}",
            f"{row['coverage_80']:.0%}",
            f"{row['width_80']:.2%}",
        )
    console.print(table)
    subject = subject_model(result.leaderboard)
    tracked = f"; MLflow run {result.run_id}" if result.run_id else ""
    champion = " (★ champion)" if result.leaderboard["champion"].any() else ""
    summary(
        f"{len(result.records)} forecasts by {result.records['model'].nunique()} models{champion}; "
        f"skill of {subject} vs the random walk in {result.run_dir / 'report.md'}{tracked}"
    )


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ``tickercast`` app."""
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
    app.command("tune")(tune_command)
    app.command("backtest")(backtest_command)
