"""The model bundle: a self-contained, verifiable folder that serving loads on CPU.

Layout (every file listed with its sha256 in ``manifest.json``; :meth:`ModelBundle.load` refuses a
bundle whose files are missing or changed):

- ``weights.pt``: the network's ``state_dict``, loaded with ``torch.load(weights_only=True)``;
- ``network.pkl``: the network's constructor arguments, which include the training
  ``TimeSeriesDataSet`` parameters with the fitted normalisers and encoders. Fitted scikit-style
  objects can only be stored by pickle, so the file's hash is checked *before* it is unpickled;
- ``hyperparameters.json``, ``features.json``, ``metadata.json``: readable copies of what the model
  is, what it reads, and where it came from.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tickercast import schema
from tickercast.errors import BundleError
from tickercast.train import dataset as ds

if TYPE_CHECKING:
    from pytorch_forecasting import TemporalFusionTransformer, TimeSeriesDataSet

BUNDLE_FORMAT = "tickercast-bundle"
BUNDLE_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.pt"
NETWORK = "network.pkl"
HYPERPARAMETERS = "hyperparameters.json"
FEATURES = "features.json"
METADATA = "metadata.json"
REQUIRED_FILES = (WEIGHTS, NETWORK, HYPERPARAMETERS, FEATURES, METADATA)
PREDICT_BATCH = 256


class InsufficientHistoryError(ValueError):
    """Some symbols have fewer usable rows than the model's encoder needs."""


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def network_kwargs(network: TemporalFusionTransformer) -> dict[str, Any]:
    """Return the constructor arguments of a network, without the modules that are rebuilt on load."""
    return {k: v for k, v in dict(network.hparams).items() if k not in ("loss", "logging_metrics")}


def build_network(
    kwargs: dict[str, Any], quantiles: tuple[float, ...] = ds.QUANTILES
) -> TemporalFusionTransformer:
    """Instantiate a TFT from stored constructor arguments (loss and metrics are rebuilt, not stored)."""
    import torch
    from pytorch_forecasting import TemporalFusionTransformer
    from pytorch_forecasting.metrics import QuantileLoss

    with warnings.catch_warnings():
        # Lightning's advice about saving module hyper-parameters concerns training, not us.
        warnings.filterwarnings("ignore", message=r"Attribute '(loss|logging_metrics)' is an instance")
        return TemporalFusionTransformer(
            **kwargs, loss=QuantileLoss(list(quantiles)), logging_metrics=torch.nn.ModuleList([])
        )


def forecast_dataset(
    network: TemporalFusionTransformer, dataset: TimeSeriesDataSet, *, interpret: bool = False
) -> tuple[pd.DataFrame, dict[str, np.ndarray] | None]:
    """Run the network over every sample of ``dataset`` in batches, without gradients.

    Args:
        network: The TFT (any device; put in eval mode here).
        dataset: Samples to forecast (one decoder step each).
        interpret: Also return per-sample variable importances and attention.

    Returns:
        A frame with ``symbol``, ``time_idx`` (the target step) and one column per quantile
        (``q10``, ``q50``, ``q90``: log returns), in the dataset's order; and, when ``interpret``,
        arrays ``static``, ``encoder``, ``decoder`` (importances) and ``attention``.

    """
    import torch

    network.eval()
    quantiles = list(network.loss.quantiles)
    frames, parts = [], {"static": [], "encoder": [], "decoder": [], "attention": []}
    loader = dataset.to_dataloader(train=False, batch_size=PREDICT_BATCH, num_workers=0)
    with torch.no_grad():
        for x, _ in loader:
            out = network(x)
            pred = out["prediction"][:, 0, :].cpu().numpy()
            index = dataset.x_to_index(x)
            frame = pd.DataFrame({schema.SYMBOL: index[schema.SYMBOL].astype(str).to_numpy()})
            frame[schema.TIME_IDX] = index[schema.TIME_IDX].to_numpy()
            for i, q in enumerate(quantiles):
                frame[quantile_column(q)] = pred[:, i]
            frames.append(frame)
            if interpret:
                interpretation = network.interpret_output(out, reduction="none")
                parts["static"].append(interpretation["static_variables"].cpu().numpy())
                parts["encoder"].append(interpretation["encoder_variables"].cpu().numpy())
                parts["decoder"].append(interpretation["decoder_variables"].cpu().numpy())
                parts["attention"].append(interpretation["attention"].cpu().numpy())
    result = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not interpret:
        return result, None
    return result, {k: np.concatenate(v) if v else np.empty((0, 0)) for k, v in parts.items()}


def quantile_column(q: float) -> str:
    """``0.1`` -> ``q10``: the column holding that quantile of the log return."""
    return f"q{round(q * 100):02d}"


def price_column(q: float) -> str:
    """``0.1`` -> ``p10``: the column holding that quantile of the next close."""
    return f"p{round(q * 100):02d}"


def _shares(values: np.ndarray, names: list[str]) -> dict[str, float]:
    total = float(np.nansum(values))
    if total <= 0:
        return dict.fromkeys(names, 0.0)
    return {name: float(v) / total for name, v in zip(names, values, strict=True)}


@dataclass
class ModelBundle:
    """A loaded model: the network on CPU plus everything needed to build its inputs.

    Use :meth:`load`; the constructor is for :func:`tickercast.train.fit.train`.
    """

    network: TemporalFusionTransformer
    dataset_parameters: dict[str, Any]
    spec: ds.FeatureSpec
    hyperparameters: dict[str, Any]
    metadata: dict[str, Any]
    path: Path | None = None

    @property
    def max_encoder_length(self) -> int:
        """Rows of model history each forecast reads."""
        return int(self.dataset_parameters["max_encoder_length"])

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
        spec: ds.FeatureSpec,
        hyperparameters: dict[str, Any],
        metadata: dict[str, Any],
    ) -> Path:
        """Write a bundle folder atomically (a sibling temp folder renamed into place).

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
                "target": ds.TARGET,
                "quantiles": quantiles,
                "features": spec.features,
                "market_indices": list(spec.market_indices),
                "known_reals": list(ds.KNOWN_REALS),
                "unknown_reals": list(spec.unknown_reals),
                "static_categoricals": [schema.SYMBOL],
            }
            meta = {
                "run_id": None,
                "model_version": None,
                "trained_at": None,
                "data_version": None,
                "test_metrics": {},
                **metadata,
                "features": spec.features,
                "max_encoder_length": encoder_length,
                "min_history_rows": encoder_length + ds.VOLUME_WINDOW - 1,
                "quantiles": quantiles,
                "format": BUNDLE_FORMAT,
                "format_version": BUNDLE_FORMAT_VERSION,
            }
            _write_json(staging / HYPERPARAMETERS, hyperparameters)
            _write_json(staging / FEATURES, features)
            _write_json(staging / METADATA, meta)
            _write_manifest(staging)
            if path.exists():
                shutil.rmtree(path)
            staging.rename(path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
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
        _verify(path)
        meta = json.loads((path / METADATA).read_text())
        meta.update(changes)
        _write_json(path / METADATA, meta)
        _write_manifest(path)
        return meta

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
        _verify(path)
        try:
            with (path / NETWORK).open("rb") as handle:
                stored = pickle.load(handle)
            features = json.loads((path / FEATURES).read_text())
            network = build_network(stored["network_kwargs"], tuple(features["quantiles"]))
            state = torch.load(path / WEIGHTS, map_location="cpu", weights_only=True)
            network.load_state_dict(state)
        except (OSError, KeyError, ValueError, RuntimeError, pickle.UnpicklingError, AttributeError) as exc:
            raise BundleError(f"bundle {path} cannot be loaded: {exc}") from None
        network.eval()
        return cls(
            network=network,
            dataset_parameters=stored["dataset_parameters"],
            spec=ds.FeatureSpec(market_indices=tuple(features["market_indices"])),
            hyperparameters=json.loads((path / HYPERPARAMETERS).read_text()),
            metadata=json.loads((path / METADATA).read_text()),
            path=path,
        )

    # --- Using the model ------------------------------------------------------------------------

    def _prediction_inputs(self, frame: pd.DataFrame) -> tuple[TimeSeriesDataSet, pd.DataFrame]:
        rows = ds.model_frame(frame, self.spec)
        counts = rows.groupby(schema.SYMBOL).size()
        symbols = sorted(set(pd.Series(frame[schema.SYMBOL]).astype(str)))
        short = [s for s in symbols if counts.get(s, 0) < self.max_encoder_length]
        if short:
            raise InsufficientHistoryError(
                f"not enough history for {', '.join(short)}: each symbol needs "
                f"{self.metadata.get('min_history_rows')} curated rows after the 200-day indicator warm-up"
            )
        return ds.prediction_dataset(self.dataset_parameters, rows, self.max_encoder_length)

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Forecast the next trading day's close for every symbol in ``frame``, in one batched pass.

        Args:
            frame: Curated rows (one or many symbols, any order); each symbol needs at least
                ``metadata["min_history_rows"]`` rows outside the indicator warm-up.

        Returns:
            One row per symbol: ``symbol, as_of, forecast_for, last_close, p10, p50, p90`` (prices).

        Raises:
            InsufficientHistoryError: A symbol has too little history.

        """
        dataset, info = self._prediction_inputs(frame)
        quantiles, _ = forecast_dataset(self.network, dataset)
        return self._to_prices(info, quantiles)

    def _to_prices(self, info: pd.DataFrame, quantiles: pd.DataFrame) -> pd.DataFrame:
        merged = info.merge(quantiles.drop(columns=[schema.TIME_IDX]), on=schema.SYMBOL, how="left")
        out = merged[[schema.SYMBOL, "as_of", "forecast_for", "last_close"]].copy()
        for q in self.quantiles:
            out[price_column(q)] = merged["last_close"] * np.exp(merged[quantile_column(q)])
        return out.reset_index(drop=True)

    def explain(self, frame: pd.DataFrame) -> dict[str, dict]:
        """Explain the forecast of every symbol in ``frame``: variable importances and attention.

        Args:
            frame: Curated rows, as for :meth:`predict`.

        Returns:
            ``{symbol: {"encoder_importance", "decoder_importance", "static_importance"
            (feature -> share summing to 1), "attention" (list over encoder steps, oldest first)}}``.

        """
        dataset, _ = self._prediction_inputs(frame)
        quantiles, parts = forecast_dataset(self.network, dataset, interpret=True)
        assert parts is not None
        network = self.network
        result: dict[str, dict] = {}
        for i, symbol in enumerate(quantiles[schema.SYMBOL]):
            attention = np.nan_to_num(parts["attention"][i][: self.max_encoder_length], nan=0.0)
            result[symbol] = {
                "encoder_importance": _shares(parts["encoder"][i], list(network.encoder_variables)),
                "decoder_importance": _shares(parts["decoder"][i], list(network.decoder_variables)),
                "static_importance": _shares(parts["static"][i], list(network.static_variables)),
                "attention": [float(a) for a in attention],
            }
        return result

    def backtest(
        self, curated: pd.DataFrame, start_idx: int, *, interpret: bool = False
    ) -> tuple[pd.DataFrame, dict | None]:
        """Forecast every (symbol, date) with ``time_idx >= start_idx`` from the rows before it.

        Used for honest evaluation (each forecast reads only rows strictly before its target date)
        and to re-evaluate the champion on a new test window.

        Args:
            curated: Curated rows of all symbols.
            start_idx: First target ``time_idx`` to forecast.
            interpret: Also return mean variable importances over the window.

        Returns:
            A frame with ``symbol, date, as_of, last_close, actual, p10, p50, p90`` and, when
            ``interpret``, ``{"encoder": {feature: share}, "decoder": ..., "static": ...}``.

        """
        from pytorch_forecasting import TimeSeriesDataSet

        rows = ds.model_frame(curated, self.spec)
        dataset = TimeSeriesDataSet.from_parameters(
            self.dataset_parameters, rows, min_prediction_idx=int(start_idx), stop_randomization=True
        )
        quantiles, parts = forecast_dataset(self.network, dataset, interpret=interpret)
        lookup = rows[
            [schema.SYMBOL, schema.TIME_IDX, schema.DATE, ds.PREV_DATE, ds.PREV_CLOSE, schema.CLOSE]
        ]
        merged = quantiles.merge(lookup, on=[schema.SYMBOL, schema.TIME_IDX], how="inner")
        out = pd.DataFrame(
            {
                schema.SYMBOL: merged[schema.SYMBOL],
                schema.DATE: merged[schema.DATE].dt.date,
                "as_of": merged[ds.PREV_DATE].dt.date,
                "last_close": merged[ds.PREV_CLOSE],
                "actual": merged[schema.CLOSE],
            }
        )
        for q in self.quantiles:
            out[price_column(q)] = merged[ds.PREV_CLOSE] * np.exp(merged[quantile_column(q)])
        importance = None
        if interpret and parts is not None and len(out):
            importance = {
                "encoder": _shares(
                    np.nanmean(parts["encoder"], axis=0), list(self.network.encoder_variables)
                ),
                "decoder": _shares(
                    np.nanmean(parts["decoder"], axis=0), list(self.network.decoder_variables)
                ),
                "static": _shares(np.nanmean(parts["static"], axis=0), list(self.network.static_variables)),
            }
        return out.sort_values([schema.SYMBOL, schema.DATE]).reset_index(drop=True), importance


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def _write_manifest(path: Path) -> None:
    files = {p.name: sha256_file(p) for p in sorted(path.iterdir()) if p.is_file() and p.name != MANIFEST}
    _write_json(
        path / MANIFEST, {"format": BUNDLE_FORMAT, "format_version": BUNDLE_FORMAT_VERSION, "files": files}
    )


def _verify(path: Path) -> None:
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
    from tickercast.train import tracking

    version = tracking.resolve_model_version(model_uri, tracking_uri)
    with tempfile.TemporaryDirectory(prefix="tickercast-bundle-") as tmp:
        local = tracking.download_version(version, tracking_uri, Path(tmp))
        bundle = ModelBundle.load(local)
    bundle.path = None
    bundle.metadata["model_version"] = str(version.version)
    return bundle, str(version.version)
