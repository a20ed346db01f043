"""Hyper-parameter search with Optuna: TPE sampler, median pruner, SQLite storage, nested MLflow runs.

The study lives in ``DIR/tuning/optuna.db``; rerunning ``tickercast tune`` with the same study name
continues it. Each trial trains in this process (one device) on the training split and is scored on
the validation split (never the test split); it is a child MLflow run of the tuning run. The best
parameters are written as a YAML file that ``tickercast train --params`` accepts.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from lightning.pytorch.callbacks import Callback

from tickercast.config import ModelParams
from tickercast.errors import UserError

if TYPE_CHECKING:
    import lightning.pytorch as pl
    import optuna

    from tickercast.config import Settings

log = logging.getLogger(__name__)


@dataclass
class TuneResult:
    """Outcome of a tuning session."""

    study_name: str
    trials: int
    best_value: float
    best_params: dict[str, Any]
    params_path: Path
    run_id: str


def suggest_params(trial: optuna.Trial | optuna.trial.FixedTrial, base: ModelParams) -> ModelParams:
    """Draw one set of hyper-parameters from the search space."""
    return ModelParams(
        **{
            **base.model_dump(),
            "hidden_size": trial.suggest_categorical("hidden_size", [8, 16, 32]),
            "attention_head_size": trial.suggest_categorical("attention_head_size", [1, 2, 4]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.3),
            "hidden_continuous_size": trial.suggest_categorical("hidden_continuous_size", [4, 8, 16]),
            "learning_rate": trial.suggest_float("learning_rate", 1e-3, 3e-2, log=True),
            "gradient_clip_val": trial.suggest_float("gradient_clip_val", 0.01, 1.0, log=True),
            "max_encoder_length": trial.suggest_categorical("max_encoder_length", [10, 20, 30, 60]),
            "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
        }
    )


class PruningCallback(Callback):
    """Report the validation loss to Optuna after each epoch and stop unpromising trials."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.pruned = False

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Report and maybe prune (raising inside Lightning would mark the run failed, so stop instead)."""
        value = trainer.callback_metrics.get("val_loss")
        if value is None:
            return
        self.trial.report(float(value), step=trainer.current_epoch)
        if self.trial.should_prune():
            self.pruned = True
            trainer.should_stop = True


def tune(
    settings: Settings,
    *,
    trials: int,
    timeout: float | None = None,
    output: Path | None = None,
    study_name: str = "tickercast-tft",
) -> TuneResult:
    """Run an Optuna study and write the best parameters.

    Args:
        settings: The effective settings (data root, base hyper-parameters, epochs, patience).
        trials: Trials to run in this session.
        timeout: Stop starting new trials after this many seconds.
        output: The best-parameters YAML (default ``DIR/tuning/best_params.yaml``).
        study_name: The study in ``DIR/tuning/optuna.db`` (continued when it exists).

    Returns:
        The study's best trial so far and where its parameters were written.

    Raises:
        UserError: No curated data, or no trial finished.

    """
    import optuna

    from tickercast.train import dataset as ds
    from tickercast.train import fit, tracking

    base = fit.resolve_params(settings)
    curated, manifest = ds.read_curated(settings)
    tuning_dir = settings.data_root / "tuning"
    tuning_dir.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(tuning_dir / 'optuna.db').resolve()}"
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction="minimize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=settings.train.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    client = tracking.client_for(settings.tracking_uri)
    experiment = tracking.experiment_id(settings)
    parent = client.create_run(
        experiment,
        tags={
            "mlflow.runName": f"tune-{study_name}",
            "tickercast.kind": "tune",
            "data_version": manifest.data_version,
            "optuna.storage": storage,
        },
    )
    parent_id = parent.info.run_id
    cache: dict[int, ds.Datasets] = {}

    def objective(trial: optuna.Trial) -> float:
        import lightning.pytorch as pl

        params = suggest_params(trial, base)
        if params.max_encoder_length not in cache:
            cache[params.max_encoder_length] = ds.build_datasets(
                curated, params, settings.train.val_fraction, settings.train.test_fraction
            )
        datasets = cache[params.max_encoder_length]
        child = client.create_run(
            experiment,
            tags={
                "mlflow.parentRunId": parent_id,
                "mlflow.runName": f"trial-{trial.number}",
                "tickercast.kind": "tune-trial",
            },
        )
        run_id = child.info.run_id
        client.log_batch(run_id, params=_params(params))
        pl.seed_everything(settings.train.seed, workers=True, verbose=False)
        module = fit.make_module(fit.new_network(datasets, params), params)
        pruning = PruningCallback(trial)
        trainer = fit.make_trainer(settings, [pruning], max_epochs=settings.train.max_epochs, params=params)
        try:
            trainer.fit(
                module,
                datasets.train.to_dataloader(train=True, batch_size=params.batch_size, num_workers=0),
                datasets.val.to_dataloader(train=False, batch_size=params.batch_size * 4, num_workers=0),
            )
        except BaseException:
            client.set_terminated(run_id, status="FAILED")
            raise
        best = trainer.early_stopping_callback.best_score if trainer.early_stopping_callback else None
        value = float(best) if best is not None else float("nan")
        tracking.log_metrics(client, run_id, {"val_loss": value, "epochs": trainer.current_epoch})
        client.set_tag(run_id, "optuna.pruned", str(pruning.pruned).lower())
        client.set_terminated(run_id, status="KILLED" if pruning.pruned else "FINISHED")
        if pruning.pruned:
            raise optuna.TrialPruned()
        if not math.isfinite(value):
            raise optuna.TrialPruned()
        return value

    try:
        study.optimize(objective, n_trials=trials, timeout=timeout, gc_after_trial=True)
    except BaseException:
        client.set_terminated(parent_id, status="FAILED")
        raise
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        client.set_terminated(parent_id, status="FAILED")
        raise UserError(f"no trial of study {study_name} finished (all pruned or failed); run more trials")
    best_params = suggest_params(optuna.trial.FixedTrial(study.best_params), base).model_dump()
    path = output or tuning_dir / "best_params.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Best of study {study_name} (trial {study.best_trial.number}, val loss {study.best_value:.6f})\n"
    )
    path.write_text(header + yaml.safe_dump(best_params, sort_keys=False))
    client.log_batch(parent_id, params=_params(ModelParams(**best_params), prefix="best."))
    tracking.log_metrics(client, parent_id, {"best_val_loss": study.best_value, "trials": len(study.trials)})
    client.log_artifact(parent_id, str(path))
    client.set_terminated(parent_id, status="FINISHED")
    return TuneResult(study_name, len(study.trials), float(study.best_value), best_params, path, parent_id)


def _params(params: ModelParams, prefix: str = "") -> list[Any]:
    from mlflow.entities import Param

    return [Param(f"{prefix}{k}", str(v)) for k, v in params.model_dump().items()]
