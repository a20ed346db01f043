"""Reading the MLflow model registry: resolve a model URI or the champion alias, download and load its bundle.

Serving and training both read the registry through here; writing to it (registering versions,
moving the alias) belongs to training's registry module. MLflow is imported inside the
functions, so importing this module stays cheap.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from tickercast.config import CHAMPION_ALIAS, REGISTERED_MODEL_NAME
from tickercast.errors import BundleError
from tickercast.model.bundle import ModelBundle

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

_URI_SHAPE = "must look like models:/NAME@ALIAS or models:/NAME/VERSION"


def client_for(tracking_uri: str) -> MlflowClient:
    """Return an MLflow client bound to ``tracking_uri`` (no global state is changed)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def champion_version(tracking_uri: str, name: str = REGISTERED_MODEL_NAME) -> str | None:
    """Return the version behind alias ``champion`` of a registered model, or ``None`` when there is none."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client_for(tracking_uri).get_model_version_by_alias(name, CHAMPION_ALIAS).version)
    except MlflowException:
        return None


def resolve_model_version(model_uri: str, tracking_uri: str) -> ModelVersion:
    """Resolve ``models:/<name>@<alias>`` or ``models:/<name>/<version>`` to a registry version.

    Args:
        model_uri: The model URI.
        tracking_uri: The MLflow tracking URI holding the registry.

    Returns:
        The registry's version record.

    Raises:
        BundleError: The URI is malformed or names nothing.

    """
    from mlflow.exceptions import MlflowException

    if not model_uri.startswith("models:/"):
        raise BundleError(f"model URI {model_uri!r} {_URI_SHAPE}")
    rest = model_uri[len("models:/") :].strip("/")
    client = client_for(tracking_uri)
    try:
        if "@" in rest:
            name, alias = rest.split("@", 1)
            return client.get_model_version_by_alias(name, alias)
        name, _, version = rest.rpartition("/")
        if not name or not version.isdigit():
            raise BundleError(f"model URI {model_uri!r} {_URI_SHAPE}")
        return client.get_model_version(name, version)
    except MlflowException as exc:
        raise BundleError(f"no registered model at {model_uri} in {tracking_uri}: {exc.message}") from None


def download_version(version: ModelVersion, tracking_uri: str, dst: Path) -> Path:
    """Download a registered version's bundle folder into ``dst`` and return its local path."""
    import mlflow.artifacts
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

    previous = os.environ.get(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name)
    os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = "false"  # no bars in service logs
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=version.source, dst_path=str(dst), tracking_uri=tracking_uri
        )
    finally:
        if previous is None:
            os.environ.pop(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name, None)
        else:
            os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = previous
    return Path(local)


def load_from_registry(model_uri: str, tracking_uri: str) -> tuple[ModelBundle, str]:
    """Download a registered bundle and load it.

    Args:
        model_uri: ``models:/<name>@<alias>`` or ``models:/<name>/<version>``.
        tracking_uri: The MLflow tracking URI holding the registry.

    Returns:
        The bundle (``metadata["model_version"]`` set) and its registry version.

    Raises:
        BundleError: The URI is malformed, names no version, or the bundle fails verification.

    """
    version = resolve_model_version(model_uri, tracking_uri)
    with tempfile.TemporaryDirectory(prefix="tickercast-bundle-") as tmp:
        local = download_version(version, tracking_uri, Path(tmp))
        bundle = ModelBundle.load(local)
    bundle.path = None
    bundle.metadata["model_version"] = str(version.version)
    return bundle, str(version.version)
