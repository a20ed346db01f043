"""MLflow runs: the experiment, run parameters, per-epoch metrics and the run records for ``--resume``.

Every side effect of a distributed run (MLflow, checkpoint run records, registry, reports, the
bundle) happens on global rank 0 only, and the decision is made in one place:
:attr:`RunTracker.active`, set from ``trainer.is_global_zero`` when the trainer sets up. The
registry and the promotion gate are in :mod:`tickercast.train.registry`.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch.callbacks import Callback

from tickercast.config import CHAMPION_ALIAS
from tickercast.errors import UserError
from tickercast.model.registry_client import client_for

if TYPE_CHECKING:
    import lightning.pytorch as pl
    from mlflow import MlflowClient

    from tickercast.config import Settings

log = logging.getLogger(__name__)

EXPERIMENT_NAME = "tickercast"
RUN_RECORD = "run.json"
LATEST_RECORD = "latest.json"


def experiment_id(settings: Settings, name: str = EXPERIMENT_NAME) -> str:
    """Return the id of the ``tickercast`` experiment, creating it when missing.

    With the embedded default store (no tracking URI configured) the experiment's artifacts go to
    ``DIR/mlartifacts``, beside ``DIR/mlflow.db``, so a local ``mlflow ui`` finds both.
    """
    client = client_for(settings.tracking_uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if settings.tracking_uri.startswith("sqlite:") and not settings.mlflow_tracking_uri:
        settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
        location = settings.artifacts_dir.resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # a concurrent creator won the race
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def git_commit() -> str | None:
    """Return the current git commit of the working directory, or ``None`` outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested params for MLflow (``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``)."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)[:6000]
    return flat


def log_metrics(
    client: MlflowClient, run_id: str, metrics: Mapping[str, float | None], step: int = 0
) -> None:
    """Log finite numeric metrics in one batch (NaN and None are skipped, not logged as garbage)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [
        Metric(key, float(value), now, step)
        for key, value in metrics.items()
        if value is not None and math.isfinite(float(value))
    ]
    if batch:
        client.log_batch(run_id, metrics=batch)


def run_finished(settings: Settings, run_id: str | None) -> bool:
    """Return whether an MLflow run exists, is active and finished.

    Args:
        settings: Where the tracking store is.
        run_id: The run to look for (``None`` or empty: no run).

    Returns:
        False for a missing, deleted or unfinished run, and for a store that cannot be read.

    """
    if not run_id:
        return False
    try:
        run = client_for(settings.tracking_uri).get_run(run_id)
    except Exception:  # a missing run and an unreadable store both mean "no usable run"
        return False
    return run.info.lifecycle_stage == "active" and run.info.status == "FINISHED"


def champion_model(settings: Settings) -> tuple[str, str] | None:
    """Return ``(version, run id)`` of the model behind the champion alias, or ``None`` when there is none.

    Args:
        settings: Where the tracking store is, and the registered model's name.

    Returns:
        The champion's version and the id of the run that trained it.

    """
    from mlflow.exceptions import MlflowException

    try:
        version = client_for(settings.tracking_uri).get_model_version_by_alias(
            settings.registered_model_name, CHAMPION_ALIAS
        )
    except MlflowException:
        return None
    return str(version.version), str(version.run_id)


def latest_training(settings: Settings, started_ms: int) -> dict[str, Any] | None:
    """Describe the training run that just finished: the newest top-level run started after ``started_ms``.

    Args:
        settings: Where the tracking store is.
        started_ms: When training was started (ms since the epoch); older runs are not considered.

    Returns:
        ``{"run_id", "model_version", "promoted"}`` (the version the run registered, ``None`` when it
        registered none, and whether that version holds the champion alias), or ``None`` when no
        finished run started since then.

    """
    from mlflow.entities import ViewType

    client = client_for(settings.tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    runs = client.search_runs(
        experiments,
        filter_string=f"attributes.start_time >= {started_ms} and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=50,
    )
    # Tuning trials are nested runs; the training run is the parent.
    top_level = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    if not top_level:
        return None
    run = top_level[0]
    versions = client.search_model_versions(f"run_id = '{run.info.run_id}'")
    version = max((int(v.version) for v in versions), default=None)
    champion = champion_model(settings)
    return {
        "run_id": run.info.run_id,
        "model_version": str(version) if version is not None else None,
        "promoted": champion is not None and version is not None and champion[0] == str(version),
    }


def champion_metrics(settings: Settings, run_id: str) -> dict[str, float]:
    """Return the test metrics a run logged, by name without the ``test_`` or ``test/`` prefix.

    The calibrated band's next-day coverage on the held-out window, where logged, comes as
    ``coverage_calibrated``.

    Args:
        settings: Where the tracking store is.
        run_id: The run (typically the champion's).

    Returns:
        The metrics; empty when the run is gone.

    """
    from mlflow.exceptions import MlflowException

    try:
        run = client_for(settings.tracking_uri).get_run(run_id)
    except MlflowException:
        return {}
    metrics = {
        k.removeprefix("test_").removeprefix("test/"): v
        for k, v in run.data.metrics.items()
        if k.startswith("test")
    }
    calibrated = run.data.metrics.get("calibration_h1_coverage_calibrated")
    if calibrated is not None:
        metrics["coverage_calibrated"] = calibrated
    return metrics


# --- Run records beside the checkpoints ---------------------------------------------------------


def read_latest_run(checkpoints_dir: Path) -> dict[str, Any]:
    """Return the record of the most recent training run (for ``--resume``).

    Raises:
        UserError: No run to resume, or its ``last.ckpt`` is gone.

    """
    latest = checkpoints_dir / LATEST_RECORD
    if not latest.is_file():
        raise UserError(f"nothing to resume: no training run recorded under {checkpoints_dir}")
    record = json.loads(latest.read_text())
    last = Path(record["checkpoint_dir"]) / "last.ckpt"
    if not last.is_file():
        raise UserError(f"cannot resume run {record['run_id']}: {last} is missing")
    record["last_checkpoint"] = str(last)
    return record


def _write_run_record(checkpoints_dir: Path, run_dir: Path, run_id: str, experiment: str) -> None:
    record = {"run_id": run_id, "experiment_id": experiment, "checkpoint_dir": str(run_dir.resolve())}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    tmp = checkpoints_dir / f".{LATEST_RECORD}.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(checkpoints_dir / LATEST_RECORD)


class RunTracker(Callback):
    """Owns the MLflow run of a training and every rank-0-only side effect of the fit.

    In :meth:`setup` global rank 0 creates (or, when resuming, reopens) the MLflow run and
    broadcasts its id, so that every rank agrees on the checkpoint folder
    ``DIR/checkpoints/<run_id>/``. Per-epoch losses are read from the synced callback metrics.

    Args:
        settings: The effective settings.
        params: Parameters to log on a new run.
        tags: Tags to set on a new run.
        resume_run_id: Reopen this run instead of creating one.

    """

    def __init__(
        self,
        settings: Settings,
        params: dict[str, Any],
        tags: dict[str, str],
        resume_run_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.params = params
        self.tags = tags
        self.resume_run_id = resume_run_id
        self.active = False
        self.run_id: str | None = None
        self.checkpoint_dir: Path | None = None
        self.fit_started = 0.0
        self.fit_seconds = 0.0
        self.epochs_run = 0
        self.start_epoch = 0

    @property
    def client(self) -> MlflowClient:
        """The MLflow client (rank 0 only)."""
        return client_for(self.settings.tracking_uri)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Decide the rank-0 guard, open the run on rank 0 and share its id with every rank."""
        self.active = trainer.is_global_zero
        run_id = self._open_run() if self.active else None
        self.run_id = trainer.strategy.broadcast(run_id, src=0)
        self.checkpoint_dir = self.settings.checkpoints_dir / str(self.run_id)
        for callback in trainer.checkpoint_callbacks:
            callback.dirpath = str(self.checkpoint_dir)  # type: ignore[attr-defined]

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record the run id beside its checkpoints (what ``--resume`` reads)."""
        if self.active and self.checkpoint_dir is not None:
            _write_run_record(
                self.settings.checkpoints_dir,
                self.checkpoint_dir,
                str(self.run_id),
                experiment_id(self.settings),
            )

    def _open_run(self) -> str:
        client = self.client
        if self.resume_run_id:
            client.update_run(self.resume_run_id, status="RUNNING")
            client.set_tag(self.resume_run_id, "resumed", "true")
            return self.resume_run_id
        run = client.create_run(experiment_id(self.settings), tags=self.tags)
        from mlflow.entities import Param

        params = [Param(k, v) for k, v in flatten(self.params).items()]
        for start in range(0, len(params), 100):
            client.log_batch(run.info.run_id, params=params[start : start + 100])
        return run.info.run_id

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the clock for the samples/s figure; record how the work is shared out."""
        self.fit_started = time.perf_counter()
        self.start_epoch = trainer.current_epoch
        if self.active:
            self.client.set_tag(str(self.run_id), "world_size", str(trainer.world_size))
            # Per rank: with a distributed sampler each rank sees 1/world_size of the samples.
            log_metrics(
                self.client, str(self.run_id), {"train_batches_per_rank": float(trainer.num_training_batches)}
            )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log the epoch's (rank-synced) train and validation losses."""
        self.fit_seconds = time.perf_counter() - self.fit_started
        self.epochs_run = trainer.current_epoch + 1 - self.start_epoch
        if not self.active:
            return
        metrics: dict[str, float] = {
            name: float(trainer.callback_metrics[name])
            for name in ("train_loss", "val_loss")
            if name in trainer.callback_metrics
        }
        metrics["epoch"] = trainer.current_epoch + 1
        log_metrics(self.client, str(self.run_id), metrics, step=trainer.current_epoch + 1)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Mark the run failed (rank 0), so a crash never leaves a run that looks alive."""
        self.fail()

    def fail(self) -> None:
        """Mark the run failed (rank 0 only)."""
        if self.active and self.run_id:
            self.client.set_terminated(self.run_id, status="FAILED")

    def finish(self) -> None:
        """Mark the run finished (rank 0 only)."""
        if self.active and self.run_id:
            self.client.set_terminated(self.run_id, status="FINISHED")
