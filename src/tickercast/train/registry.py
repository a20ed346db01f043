"""The model registry for training: register a version, the promotion gate, the ``champion`` alias.

Reading the registry (resolving a URI, the champion's version, loading a registered bundle) is
shared with serving and lives in :mod:`tickercast.model.registry_client`; it is re-exported here so
training code has one registry module to import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tickercast.config import CHAMPION_ALIAS
from tickercast.model.registry_client import (
    champion_version,
    client_for,
    download_version,
    load_from_registry,
    resolve_model_version,
)
from tickercast.train.tracking import log_metrics

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "GATE_TOLERANCE",
    "GateDecision",
    "apply_decision",
    "champion_version",
    "client_for",
    "decide_promotion",
    "download_version",
    "load_from_registry",
    "register_version",
    "resolve_model_version",
]

# Relative tolerance of the promotion gate: float noise, not a margin that lets worse models in.
GATE_TOLERANCE = 1e-9


@dataclass
class GateDecision:
    """The outcome of the promotion gate, logged on the run and as version tags.

    The backtest gate (:mod:`tickercast.train.gate`) fills every figure: the MAE (price units,
    mean over horizons), the scaled CRPS and the MAE relative to the random walk of both models on
    the same held-out rows. The one-window rule (:func:`decide_promotion`) fills the MAEs only.
    """

    promoted: bool
    candidate_mae: float = math.nan
    champion_version: str | None = None
    champion_mae: float | None = None
    reason: str = ""
    candidate_scaled_crps: float | None = None
    champion_scaled_crps: float | None = None
    candidate_mae_vs_naive: float | None = None
    champion_mae_vs_naive: float | None = None

    def metrics(self) -> dict[str, float | None]:
        """Return the figures as MLflow metrics ``gate_<role>_<figure>`` (missing ones are ``None``)."""
        return {
            "gate_candidate_mae": self.candidate_mae,
            "gate_champion_mae": self.champion_mae,
            "gate_candidate_scaled_crps": self.candidate_scaled_crps,
            "gate_champion_scaled_crps": self.champion_scaled_crps,
            "gate_candidate_mae_vs_naive": self.candidate_mae_vs_naive,
            "gate_champion_mae_vs_naive": self.champion_mae_vs_naive,
        }


def decide_promotion(candidate_mae: float, champion_mae: float | None, champion: str | None) -> GateDecision:
    """Promote by the one-window rule: when there is no usable champion or the MAE is no worse.

    The gate uses it where the backtest cannot compare the two models: no champion, a champion
    that cannot be evaluated, or one that saw every origin of the candidate's held-out window.

    Args:
        candidate_mae: The new model's test MAE.
        champion_mae: The champion's MAE re-evaluated on the same test samples (``None`` when there
            is no champion or it could not be evaluated).
        champion: The champion's version, if any.

    Returns:
        The decision with both figures and a one-line reason.

    """
    if not math.isfinite(candidate_mae):
        return GateDecision(False, candidate_mae, champion, champion_mae, "candidate MAE is not finite")
    if champion is None:
        return GateDecision(True, candidate_mae, None, None, "no champion yet")
    if champion_mae is None or not math.isfinite(champion_mae):
        return GateDecision(
            True, candidate_mae, champion, champion_mae, f"champion v{champion} could not be evaluated"
        )
    if candidate_mae <= champion_mae * (1 + GATE_TOLERANCE):
        return GateDecision(
            True,
            candidate_mae,
            champion,
            champion_mae,
            f"test MAE {candidate_mae:.4f} <= champion v{champion}'s {champion_mae:.4f}",
        )
    return GateDecision(
        False,
        candidate_mae,
        champion,
        champion_mae,
        f"test MAE {candidate_mae:.4f} > champion v{champion}'s {champion_mae:.4f}: champion kept",
    )


def register_version(
    client: MlflowClient, name: str, run_id: str, artifact_path: str, tags: dict[str, str]
) -> str:
    """Register the run's bundle artifact as a new version of ``name`` and return the version."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description="tickercast Temporal Fusion Transformer bundles")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{artifact_path}"
    version = client.create_model_version(name, source=source, run_id=run_id, tags=tags)
    return str(version.version)


def apply_decision(
    client: MlflowClient, name: str, version: str, run_id: str, decision: GateDecision
) -> None:
    """Move the ``champion`` alias when promoted; record the decision and both figures either way."""
    if decision.promoted:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
    tags = {
        "promotion.promoted": str(decision.promoted).lower(),
        "promotion.reason": decision.reason,
        "promotion.previous_champion": decision.champion_version or "",
    }
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
        client.set_model_version_tag(name, version, key, value)
    log_metrics(client, run_id, decision.metrics())
