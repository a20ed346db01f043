"""Training: the DDP trainer and :func:`train`, which the CLI and pipeline call.

Distributed data parallelism: ``Trainer(strategy="ddp", accelerator=..., devices=N, num_nodes=M)``.
On one node Lightning starts the other processes itself by re-running the command line, so DDP
with ``devices > 1`` must be started from the ``tickercast train`` process (not from inside another
program). Under ``torchrun`` Lightning reads the torchelastic environment instead; the node and
process counts are then taken from it. Gloo on CPU, NCCL on GPU.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pandas as pd
import yaml

from tickercast.config import ModelParams
from tickercast.errors import UserError
from tickercast.model.inputs import QUANTILES
from tickercast.train import dataset as ds

if TYPE_CHECKING:
    import lightning.pytorch as pl
    from pytorch_forecasting import TemporalFusionTransformer

    from tickercast.config import Settings
    from tickercast.manifest import CuratedManifest
    from tickercast.model.bundle import ModelBundle
    from tickercast.train.evaluate import Evaluation
    from tickercast.train.registry import GateDecision
    from tickercast.train.tracking import RunTracker

log = logging.getLogger(__name__)

BUNDLE_ARTIFACT = "bundle"
REPORT_ARTIFACT = "report"
PYFUNC_ARTIFACT = "pyfunc"


@dataclass
class TrainResult:
    """What a training run produced (on ranks other than 0 only ``rank`` is meaningful)."""

    run_id: str | None
    model_version: str | None
    promoted: bool
    test_metrics: dict[str, float]
    bundle_dir: Path | None
    rank: int = 0
    report_path: Path | None = None
    epochs: int = 0
    samples_per_second: float = 0.0
    gate_reason: str = ""


def resolve_params(settings: Settings) -> ModelParams:
    """Return the model hyper-parameters in force: ``settings.model`` overlaid by the params YAML file.

    The file (``--params``, default ``configs/tft.yaml``) holds ModelParams keys at the top level or
    under ``model:``. A missing default file falls back to the built-in defaults; a missing file
    the user named is an error.

    Raises:
        UserError: The file is missing (when named), not YAML, or holds unknown or invalid keys.

    """
    path = Path(settings.train.params_file)
    default = Path("configs/tft.yaml")
    if not path.is_absolute() and not path.exists():
        repo_copy = Path(__file__).resolve().parents[3] / path
        path = repo_copy if repo_copy.exists() else path
    if not path.exists():
        if Path(settings.train.params_file) == default:
            return settings.model
        raise UserError(f"params file {settings.train.params_file} does not exist")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"params file {path} is not valid YAML: {exc}") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        loaded = loaded["model"]
    if not isinstance(loaded, dict):
        raise UserError(f"params file {path} must hold a mapping of model hyper-parameters")
    from pydantic import ValidationError

    try:
        return ModelParams(**{**settings.model.model_dump(), **loaded})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UserError(f"params file {path}: {problems}") from None


def new_network(datasets: ds.Datasets, params: ModelParams) -> TemporalFusionTransformer:
    """Build a fresh TFT sized for ``datasets.train`` with the given hyper-parameters."""
    from tickercast.model.network import build_network

    kwargs = {
        "hidden_size": params.hidden_size,
        "attention_head_size": params.attention_head_size,
        "dropout": params.dropout,
        "hidden_continuous_size": params.hidden_continuous_size,
        "learning_rate": params.learning_rate,
        "log_interval": -1,
    }
    return build_network(kwargs, dataset=datasets.train)


def _lightning():
    import lightning.pytorch as pl

    return pl


def make_module(network: TemporalFusionTransformer, params: ModelParams) -> pl.LightningModule:
    """Return the LightningModule that trains ``network``."""
    from tickercast.train.module import ForecastModule

    return ForecastModule(network, params.learning_rate)


def topology(settings: Settings) -> tuple[int, int]:
    """``(devices per node, nodes)``: from torchelastic's environment under torchrun, else settings."""
    if os.environ.get("TORCHELASTIC_RUN_ID") and os.environ.get("LOCAL_WORLD_SIZE"):
        local = int(os.environ["LOCAL_WORLD_SIZE"])
        world = int(os.environ.get("WORLD_SIZE", local))
        nodes = max(1, world // max(1, local))
        if (local, nodes) != (settings.train.devices, settings.train.num_nodes):
            log.info(
                "torchrun: using %d process(es) per node on %d node(s) from its environment", local, nodes
            )
        return local, nodes
    return settings.train.devices, settings.train.num_nodes


def make_trainer(
    settings: Settings,
    callbacks: list[Any],
    *,
    max_epochs: int,
    devices: int = 1,
    num_nodes: int = 1,
    params: ModelParams,
    checkpoint_dir: Path | None = None,
) -> pl.Trainer:
    """Build the Lightning trainer: DDP when more than one process takes part, early stopping on val loss."""
    import sys

    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    pl = _lightning()
    distributed = devices * num_nodes > 1
    all_callbacks = [
        EarlyStopping(monitor="val_loss", patience=settings.train.patience, mode="min"),
        *callbacks,
    ]
    if checkpoint_dir is not None:
        all_callbacks.append(
            ModelCheckpoint(
                dirpath=str(checkpoint_dir),
                filename="best",
                monitor="val_loss",
                mode="min",
                save_top_k=1,
                save_last=True,
                enable_version_counter=False,
            )
        )
    return pl.Trainer(
        strategy="ddp" if distributed else "auto",
        accelerator=settings.train.accelerator,
        devices=devices,
        num_nodes=num_nodes,
        max_epochs=max_epochs,
        gradient_clip_val=params.gradient_clip_val or None,
        callbacks=all_callbacks,
        logger=False,
        enable_checkpointing=checkpoint_dir is not None,
        enable_progress_bar=sys.stderr.isatty(),
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(settings.checkpoints_dir),
        deterministic=False,
    )


def seen_through(datasets: ds.Datasets) -> dt.date:
    """Return the last date of the rows training and validation read (the test window is unseen)."""
    frame = datasets.frame
    seen = frame.loc[frame["time_idx"] < datasets.split.test_start_idx, "date"]
    return pd.Timestamp(seen.max()).date()


def train(settings: Settings, *, resume: bool = False, through: dt.date | None = None) -> TrainResult:
    """Train, evaluate, bundle, register and (maybe) promote a TFT on the curated dataset.

    Every process of a DDP run calls this; only global rank 0 touches MLflow, the registry, the
    report and the bundle (see :class:`tickercast.train.tracking.RunTracker`).

    Args:
        settings: The effective settings (data root, model and training sections).
        resume: Continue the most recent run from its ``last`` checkpoint, in the same MLflow run.
        through: Use only curated rows dated on or before this day (the walk-forward backtest
            trains a model that has seen nothing after its first origin).

    Returns:
        The run's result; on ranks other than 0 only ``rank`` is filled in.

    Raises:
        UserError: No curated data, too little data, nothing to resume, a bad params file.

    """
    pl = _lightning()
    from tickercast.train import tracking

    params = resolve_params(settings)
    record = tracking.read_latest_run(settings.checkpoints_dir) if resume else None
    pl.seed_everything(settings.train.seed, workers=True, verbose=False)
    curated, manifest = ds.read_curated(settings)
    if through is not None:
        curated = curated[pd.to_datetime(curated["date"]).dt.date <= through]
    datasets = ds.build_datasets(curated, params, settings.train.val_fraction, settings.train.test_fraction)
    network = new_network(datasets, params)
    module = make_module(network, params)

    devices, num_nodes = topology(settings)
    tags = {
        "mlflow.runName": f"tft-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}",
        "data_version": manifest.data_version,
    }
    commit = tracking.git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    run_params = {
        "model": params.model_dump(),
        "train": {
            **settings.train.model_dump(mode="json"),
            "devices": devices,
            "num_nodes": num_nodes,
        },
        "data": {
            "data_version": manifest.data_version,
            "symbols": int(datasets.frame["symbol"].nunique()),
            "train_samples": len(datasets.train),
            "val_samples": len(datasets.val),
            "test_samples": len(datasets.test),
            **datasets.split.as_dict(),
        },
        "features": ",".join(datasets.spec.features),
        "quantiles": ",".join(str(q) for q in QUANTILES),
    }
    tracker = tracking.RunTracker(
        settings, run_params, tags, resume_run_id=record["run_id"] if record else None
    )
    trainer = make_trainer(
        settings,
        [tracker],
        max_epochs=settings.train.max_epochs,
        devices=devices,
        num_nodes=num_nodes,
        params=params,
        # Replaced by DIR/checkpoints/<run_id> once rank 0 has opened the MLflow run (RunTracker.setup).
        checkpoint_dir=settings.checkpoints_dir / "pending",
    )
    train_loader = datasets.train.to_dataloader(train=True, batch_size=params.batch_size, num_workers=0)
    val_loader = datasets.val.to_dataloader(train=False, batch_size=params.batch_size * 4, num_workers=0)
    trainer.fit(module, train_loader, val_loader, ckpt_path=record["last_checkpoint"] if record else None)

    # The one rank-0 guard: every side effect below runs on global rank 0 only.
    if not tracker.active:
        return TrainResult(None, None, False, {}, None, rank=trainer.global_rank)
    try:
        return _finish(settings, params, datasets, curated, manifest, trainer, tracker)
    except BaseException:
        tracker.fail()
        raise


def _finish(
    settings: Settings,
    params: ModelParams,
    datasets: ds.Datasets,
    curated: Any,
    manifest: CuratedManifest,
    trainer: pl.Trainer,
    tracker: RunTracker,
) -> TrainResult:
    """Rank 0 after the fit: best weights -> bundle -> evaluation -> gate -> registry -> report."""
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint

    from tickercast.model.bundle import ModelBundle
    from tickercast.model.calibration import apply_calibration
    from tickercast.train import evaluate, registry, tracking
    from tickercast.train.calibrate import calibrate, calibration_summary, held_out_origins
    from tickercast.train.pyfunc import log_pyfunc

    run_id = str(tracker.run_id)
    client = tracker.client
    network = trainer.lightning_module.network
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) else ""
    if best and Path(best).is_file():
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        trainer.lightning_module.load_state_dict(state)
    network = cast("TemporalFusionTransformer", network).to("cpu").eval()

    samples_per_second = (
        tracker.epochs_run * len(datasets.train) / tracker.fit_seconds if tracker.fit_seconds > 0 else 0.0
    )
    # A resumed run finishes again: each finish gets its own artifact, so earlier versions stay intact.
    finished_before = sum(1 for f in client.list_artifacts(run_id) if f.path.startswith(BUNDLE_ARTIFACT))
    artifact = BUNDLE_ARTIFACT if finished_before == 0 else f"{BUNDLE_ARTIFACT}-{finished_before + 1}"
    bundle_dir = (
        settings.data_root
        / "bundles"
        / (run_id if finished_before == 0 else f"{run_id}-{finished_before + 1}")
    )
    metadata = {
        "run_id": run_id,
        "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "data_version": manifest.data_version,
        "split": datasets.split.as_dict(),
        # The last date whose rows the model learnt from (training and validation windows): a
        # backtest may only evaluate it from origins on or after this day.
        "trained_through": seen_through(datasets).isoformat(),
        "symbols": sorted(datasets.frame["symbol"].unique().tolist()),
    }
    ModelBundle.write(
        bundle_dir, network, datasets.train.get_parameters(), datasets.spec, params.model_dump(), metadata
    )
    bundle = ModelBundle.load(bundle_dir)
    # The held-out window's walk-forward records serve twice: the calibration and the promotion gate.
    origins = held_out_origins(datasets.frame, datasets.split)
    calibration, records = calibrate(bundle, curated, origins)
    ModelBundle.write_calibration(bundle_dir, calibration)
    skill = calibration_summary(calibration)
    ModelBundle.update_metadata(bundle_dir, calibration=skill)
    bundle = ModelBundle.load(bundle_dir)
    evaluation = evaluate.evaluate_bundle(bundle, curated, datasets.split.test_start_idx, settings.data_root)
    metrics = evaluation.metrics
    calibration_metrics = {
        f"calibration_h{h}_{name}": float(value)
        for h, figures in skill.items()
        for name, value in figures.items()
        if name != "skill"
    }
    tracking.log_metrics(
        client,
        run_id,
        {
            **{f"test_{k}": v for k, v in metrics.items()},
            **calibration_metrics,
            "train_samples_per_second": samples_per_second,
        },
    )

    # Promotion gate: candidate and champion walked forward over the candidate's held-out window.
    name = settings.registered_model_name
    decision = promotion_gate(
        settings, bundle, records, curated, origins, evaluation, datasets.split.test_start_idx
    )

    test_metrics = {k: float(v) for k, v in metrics.items()}
    ModelBundle.update_metadata(bundle_dir, test_metrics=test_metrics)
    client.log_artifacts(run_id, str(bundle_dir), artifact)
    log_pyfunc(client, run_id, bundle_dir, artifact.replace(BUNDLE_ARTIFACT, PYFUNC_ARTIFACT, 1))
    client.log_dict(run_id, manifest.as_json(), "data/manifest.json")
    version = registry.register_version(
        client,
        name,
        run_id,
        artifact,
        {"data_version": manifest.data_version, "test_mae": f"{metrics['mae']:.6f}"},
    )
    registry.apply_decision(client, name, version, run_id, decision)
    ModelBundle.update_metadata(bundle_dir, model_version=version)

    report_dir = settings.reports_dir / run_id
    context = {
        "run id": run_id,
        "model version": f"{name} v{version}",
        "data version": manifest.data_version,
        "test window": f"{datasets.split.test_start.date()} .. {datasets.split.last_date.date()}",
        "epochs": trainer.current_epoch,
        "promotion": ("promoted to champion: " if decision.promoted else "not promoted: ") + decision.reason,
        **gate_context(decision),
    }
    calibrated = apply_calibration(records, calibration) if len(records) else None
    report = evaluate.write_report(report_dir, evaluation, context, calibration=skill, records=calibrated)
    evaluation.predictions.to_csv(report_dir / "test_predictions.csv", index=False)
    client.log_artifacts(run_id, str(report_dir), REPORT_ARTIFACT)
    tracker.finish()
    return TrainResult(
        run_id=run_id,
        model_version=version,
        promoted=decision.promoted,
        test_metrics=test_metrics,
        bundle_dir=bundle_dir,
        rank=0,
        report_path=report,
        epochs=trainer.current_epoch,
        samples_per_second=samples_per_second,
        gate_reason=decision.reason,
    )


def promotion_gate(
    settings: Settings,
    bundle: ModelBundle,
    records: pd.DataFrame,
    curated: pd.DataFrame,
    origins: list[dt.date],
    evaluation: Evaluation,
    test_start_idx: int,
) -> GateDecision:
    """Compare the candidate with the champion on the backtest over the candidate's held-out origins.

    Falls back to the one-window rule (:func:`tickercast.train.registry.decide_promotion`) when
    there is no champion, when the champion cannot be evaluated (it is replaced), or when it saw
    every held-out origin; the reason says which.

    Args:
        settings: Tracking URI and registered model name.
        bundle: The candidate.
        records: The candidate's raw walk-forward records over ``origins``.
        curated: Curated rows of all symbols.
        origins: The candidate's held-out origins (its test window).
        evaluation: The candidate's one-step test evaluation (for the fallback).
        test_start_idx: First target ``time_idx`` of the test window (for the fallback).

    Returns:
        The decision with its figures.

    """
    from tickercast.train import evaluate, registry
    from tickercast.train.gate import backtest_gate, seen_through

    name = settings.registered_model_name
    champion = registry.champion_version(settings.tracking_uri, name)
    candidate_mae = evaluation.metrics["mae"]
    if champion is None:
        return registry.decide_promotion(candidate_mae, None, None)
    try:
        champion_bundle, _ = registry.load_from_registry(f"models:/{name}/{champion}", settings.tracking_uri)
        decision = backtest_gate(records, champion_bundle, champion, curated, origins, bundle.horizon)
        if decision is not None:
            return decision
        # The champion saw the whole window: the old rule, on the same one-step forecasts.
        champion_eval, _ = champion_bundle.backtest(curated, test_start_idx)
        candidate_mae, champion_mae, _ = evaluate.common_mae(evaluation.predictions, champion_eval)
    except Exception as exc:  # an unusable champion must not block a working candidate
        log.warning("champion v%s could not be evaluated: %s", champion, exc)
        decision = registry.decide_promotion(candidate_mae, None, champion)
        return dataclasses.replace(decision, reason=f"{decision.reason} ({type(exc).__name__}: {exc})")
    decision = registry.decide_promotion(candidate_mae, champion_mae, champion)
    seen = seen_through(champion_bundle.metadata)
    note = (
        f"champion v{champion} learnt from data through {seen or 'an unrecorded date'}, which covers "
        "every held-out origin of the candidate, so there is no backtest unseen by both; one-step "
        "test MAE compared instead"
    )
    return dataclasses.replace(decision, reason=f"{note}: {decision.reason}")


def gate_context(decision: GateDecision) -> dict[str, str]:
    """Return the gate's figures as report header lines (only those the decision has)."""
    pairs = {
        "gate scaled CRPS": (decision.candidate_scaled_crps, decision.champion_scaled_crps, ".4f"),
        "gate MAE vs naive": (decision.candidate_mae_vs_naive, decision.champion_mae_vs_naive, ".3f"),
    }
    return {
        label: f"candidate {cand:{fmt}}, champion v{decision.champion_version} {champ:{fmt}}"
        for label, (cand, champ, fmt) in pairs.items()
        if cand is not None and champ is not None
    }
