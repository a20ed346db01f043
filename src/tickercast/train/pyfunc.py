"""An MLflow pyfunc flavour of the bundle, so ``mlflow models serve`` can serve it too.

Each training run logs it as the ``pyfunc`` artifact::

    mlflow models serve -m runs:/<run_id>/pyfunc --env-manager local

The model's input is a frame of curated rows (one or many symbols); the output is
:func:`tickercast.model.inference.predict`'s frame. The bundle inside is verified on load
like any other.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow.pyfunc

from tickercast.model.bundle import ModelBundle

ARTIFACT = "pyfunc"


class BundleModel(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined]
    """pyfunc wrapper: curated rows in, next-day quantile prices out."""

    def load_context(self, context: Any) -> None:
        """Load and verify the bundle shipped as the ``bundle`` artifact."""
        self.bundle = ModelBundle.load(Path(context.artifacts["bundle"]))

    # No type hints here on purpose: MLflow turns them into a schema it cannot express for frames.
    def predict(self, context, model_input, params=None):
        """Forecast every symbol in ``model_input`` (a pandas frame of curated rows)."""
        return self.bundle.predict(model_input)


def log_pyfunc(client: Any, run_id: str, bundle_dir: Path, artifact_path: str = ARTIFACT) -> str:
    """Save the pyfunc model around ``bundle_dir`` and log it as an artifact of the run.

    Args:
        client: An MLflow client.
        run_id: The training run.
        bundle_dir: The verified bundle folder.
        artifact_path: Where in the run's artifacts (``pyfunc``; ``pyfunc-2``... after a resume).

    Returns:
        ``artifact_path``.

    """
    with tempfile.TemporaryDirectory(prefix="tickercast-pyfunc-") as tmp:
        path = Path(tmp) / artifact_path
        mlflow.pyfunc.save_model(
            path=str(path),
            python_model=BundleModel(),
            artifacts={"bundle": str(bundle_dir)},
            pip_requirements=["tickercast[serve]"],
        )
        client.log_artifacts(run_id, str(path), artifact_path)
    return artifact_path
