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
    """The outcome of the promotion gate, logged on the run and as version tags."""

    promoted: bool
    candidate_mae: float
    champion_version: str | None
    champion_mae: float | None
    reason: str


def decide_promotion(candidate_mae: float, champion_mae: float | None, champion: str | None) -> GateDecision:
    """Promote when there is no usable champion or the candidate's MAE is no worse on the same window.

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
    log_metrics(
        client,
        run_id,
        {"gate_candidate_mae": decision.candidate_mae, "gate_champion_mae": decision.champion_mae},
    )
