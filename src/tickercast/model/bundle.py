"""The model bundle: a self-contained, verifiable folder that serving loads on CPU.

Layout (every file listed with its sha256 in ``manifest.json``; :meth:`ModelBundle.load` refuses a
bundle whose files are missing or changed):

- ``weights.pt``: the network's ``state_dict``, loaded with ``torch.load(weights_only=True)``;
- ``network.pkl``: the network's constructor arguments, which include the training
  ``TimeSeriesDataSet`` parameters with the fitted normalisers and encoders. Fitted scikit-style
  objects can only be stored by pickle, so the file's hash is checked *before* it is unpickled;
- ``hyperparameters.json``, ``features.json``, ``metadata.json``: readable copies of what the model
  is, what it reads, and where it came from;
- ``calibration.json`` (optional): the conformal layer and skill shrinkage fitted on the model's
  walk-forward residuals (:mod:`tickercast.model.calibration`).
"""

from __future__ import annotations

import functools
import json
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tickercast import schema
from tickercast.errors import BundleError
from tickercast.files import sha256_file, swap_into_place, write_json, write_text
from tickercast.model import inference, inputs, windows
from tickercast.model.network import build_network, network_kwargs

if TYPE_CHECKING:
    import pandas as pd
    from pytorch_forecasting import TemporalFusionTransformer

    from tickercast.model.calibration import Calibration

BUNDLE_FORMAT = "tickercast-bundle"
BUNDLE_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.pt"
NETWORK = "network.pkl"
HYPERPARAMETERS = "hyperparameters.json"
FEATURES = "features.json"
METADATA = "metadata.json"
CALIBRATION = "calibration.json"
REQUIRED_FILES = (WEIGHTS, NETWORK, HYPERPARAMETERS, FEATURES, METADATA)


@dataclass
class ModelBundle:
    """A loaded model: the network on CPU plus everything needed to build its inputs.

    Use :meth:`load` (training writes bundles with :meth:`write`). ``predict``, ``explain`` and
    ``backtest`` run :mod:`tickercast.model.inference` on this bundle.
    """

    network: TemporalFusionTransformer
    dataset_parameters: dict[str, Any]
    spec: inputs.FeatureSpec
    hyperparameters: dict[str, Any]
    metadata: dict[str, Any]
    path: Path | None = None
    # The conformal layer and skill shrinkage (calibration.json), when the bundle has one.
    calibration: Calibration | None = None

    @functools.cached_property
    def layout(self) -> windows.Layout:
        """The network's input layout, read once from the fitted dataset parameters."""
        return windows.Layout.from_parameters(self.dataset_parameters)

    @property
    def max_encoder_length(self) -> int:
        """Rows of model history each forecast reads."""
        return int(self.dataset_parameters["max_encoder_length"])

    @property
    def horizon(self) -> int:
        """Trading days ahead the model forecasts (1 for bundles from before several horizons)."""
        return inputs.horizon_of(self.dataset_parameters)

    @property
    def quantiles(self) -> tuple[float, ...]:
        """The predicted quantiles, ascending."""
        return tuple(float(q) for q in self.network.loss.quantiles)

    # --- Saving and loading ---------------------------------------------------------------------

    @staticmethod
    def write(
        path: Path,
        network: TemporalFusionTransformer,
        dataset_parameters: dict[str, Any],
        spec: inputs.FeatureSpec,
        hyperparameters: dict[str, Any],
        metadata: dict[str, Any],
    ) -> Path:
        """Write a bundle folder atomically (a sibling temp folder swapped into place).

        Args:
            path: The bundle folder to create (replaced if present).
            network: The trained TFT.
            dataset_parameters: ``TimeSeriesDataSet.get_parameters()`` of the training set.
            spec: The feature spec the model was trained with.
            hyperparameters: The model hyper-parameters (JSON-serialisable).
            metadata: Run metadata; completed with ``features``, ``max_encoder_length`` and
                ``min_history_rows``.

        Returns:
            ``path``.

        """
        import torch

        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
        try:
            state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
            torch.save(state, staging / WEIGHTS)
            with (staging / NETWORK).open("wb") as handle:
                pickle.dump(
                    {"network_kwargs": network_kwargs(network), "dataset_parameters": dataset_parameters},
                    handle,
                    protocol=pickle.HIGHEST_PROTOCOL,
                )
            quantiles = [float(q) for q in network.loss.quantiles]
            encoder_length = int(dataset_parameters["max_encoder_length"])
            features = {
                "target": inputs.TARGET,
                "quantiles": quantiles,
                "features": spec.features,
                "market_indices": list(spec.market_indices),
                "known_reals": list(inputs.KNOWN_REALS),
                "unknown_reals": list(spec.unknown_reals),
                "static_categoricals": [schema.SYMBOL],
            }
            meta: dict[str, Any] = {
                "run_id": None,
                "model_version": None,
                "trained_at": None,
                "data_version": None,
                "test_metrics": {},
                **metadata,
                "features": spec.features,
                "max_encoder_length": encoder_length,
                "min_history_rows": encoder_length + inputs.VOLUME_WINDOW - 1,
                "horizon": inputs.horizon_of(dataset_parameters),
                "quantiles": quantiles,
                "format": BUNDLE_FORMAT,
                "format_version": BUNDLE_FORMAT_VERSION,
            }
            write_json(staging / HYPERPARAMETERS, hyperparameters)
            write_json(staging / FEATURES, features)
            write_json(staging / METADATA, meta)
            _write_manifest(staging)
            # After the swap ``staging`` holds the previous bundle, if there was one.
            swap_into_place(staging, path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return path

    @staticmethod
    def update_metadata(path: Path, **changes: Any) -> dict[str, Any]:
        """Change fields of a written bundle's metadata and re-seal its manifest.

        Args:
            path: A bundle folder (verified first).
            **changes: Metadata fields to set.

        Returns:
            The new metadata.

        """
        verify(path)
        meta = json.loads((path / METADATA).read_text())
        meta.update(changes)
        write_json(path / METADATA, meta)
        _write_manifest(path)
        return meta

    @staticmethod
    def write_calibration(path: Path, calibration: Calibration) -> None:
        """Add (or replace) a written bundle's ``calibration.json`` and re-seal its manifest.

        Args:
            path: A bundle folder (verified first).
            calibration: The conformal layer fitted on the model's walk-forward residuals.

        """
        verify(path)
        write_text(path / CALIBRATION, calibration.to_json())
        _write_manifest(path)

    @classmethod
    def load(cls, path: Path) -> ModelBundle:
        """Load and verify a bundle on CPU.

        Args:
            path: The bundle folder.

        Returns:
            The bundle, network in eval mode.

        Raises:
            BundleError: The folder, the manifest or a file is missing, or a file's sha256 differs
                from the manifest (checked before anything is unpickled).

        """
        import torch

        path = Path(path)
        verify(path)
        try:
            with (path / NETWORK).open("rb") as handle:
                stored = pickle.load(handle)
            features = json.loads((path / FEATURES).read_text())
            network = build_network(stored["network_kwargs"], quantiles=tuple(features["quantiles"]))
            state = torch.load(path / WEIGHTS, map_location="cpu", weights_only=True)
            network.load_state_dict(state)
        except (OSError, KeyError, ValueError, RuntimeError, pickle.UnpicklingError, AttributeError) as exc:
            raise BundleError(f"bundle {path} cannot be loaded: {exc}") from None
        network.eval()
        return cls(
            network=network,
            dataset_parameters=stored["dataset_parameters"],
            spec=inputs.FeatureSpec(market_indices=tuple(features["market_indices"])),
            hyperparameters=json.loads((path / HYPERPARAMETERS).read_text()),
            metadata=json.loads((path / METADATA).read_text()),
            path=path,
            calibration=_read_calibration(path),
        )

    # --- Using the model ------------------------------------------------------------------------

    def predict_paths(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Forecast every horizon for every symbol in ``frame`` (see :func:`inference.predict_paths`)."""
        return inference.predict_paths(self, frame)

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Forecast the next trading day for every symbol in ``frame`` (see :func:`inference.predict`)."""
        return inference.predict(self, frame)

    def explain(self, frame: pd.DataFrame) -> dict[str, dict]:
        """Variable importances and attention per symbol (see :func:`inference.explain`)."""
        return inference.explain(self, frame)

    def backtest(
        self, curated: pd.DataFrame, start_idx: int, *, interpret: bool = False
    ) -> tuple[pd.DataFrame, dict | None]:
        """Forecast every target from ``start_idx`` on from earlier rows (see :func:`inference.backtest`)."""
        return inference.backtest(self, curated, start_idx, interpret=interpret)


def _read_calibration(path: Path) -> Calibration | None:
    if not (path / CALIBRATION).is_file():
        return None
    from pydantic import ValidationError

    from tickercast.model.calibration import Calibration

    try:
        return Calibration.from_json((path / CALIBRATION).read_text())
    except (OSError, ValueError, ValidationError) as exc:
        raise BundleError(f"bundle {path}: {CALIBRATION} cannot be read: {exc}") from None


def _write_manifest(path: Path) -> None:
    files = {p.name: sha256_file(p) for p in sorted(path.iterdir()) if p.is_file() and p.name != MANIFEST}
    write_json(
        path / MANIFEST, {"format": BUNDLE_FORMAT, "format_version": BUNDLE_FORMAT_VERSION, "files": files}
    )


def verify(path: Path) -> None:
    """Check a bundle folder against its manifest: every listed file present with its sha256.

    Args:
        path: The bundle folder.

    Raises:
        BundleError: The folder, the manifest or a required file is missing, the format is unknown,
            or a file's sha256 differs from the manifest.

    """
    if not path.is_dir():
        raise BundleError(f"model bundle {path} does not exist or is not a folder")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"model bundle {path} has no {MANIFEST}")
    try:
        manifest = json.loads(manifest_path.read_text())
        files: dict[str, str] = manifest["files"]
    except (ValueError, KeyError, TypeError):
        raise BundleError(f"model bundle {path}: {MANIFEST} is not a valid bundle manifest") from None
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"model bundle {path}: unknown format {manifest.get('format')!r}")
    for name in REQUIRED_FILES:
        if name not in files:
            raise BundleError(f"model bundle {path}: manifest does not list {name}")
    for name, expected in files.items():
        file = path / name
        if Path(name).name != name or not file.is_file():
            raise BundleError(f"model bundle {path}: file {name} is missing")
        if sha256_file(file) != expected:
            raise BundleError(f"model bundle {path}: file {name} was modified (sha256 mismatch)")
