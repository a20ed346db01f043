"""Loading the model at start-up and swapping in a new champion (or new data) without downtime.

Everything slow (MLflow download, hash checks, reading Parquet, the batched forecast) runs in a
worker thread; the event loop only swaps a reference once a complete snapshot exists. A failed
load is logged and counted, and whatever was serving goes on serving.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re

from tickercast.config import CHAMPION_ALIAS, Settings
from tickercast.serve.conformal import ConformalStore
from tickercast.serve.metrics import ServeMetrics
from tickercast.serve.predictor import Predictor, PredictorHolder, read_data_version

log = logging.getLogger(__name__)

_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")


def followed_model(settings: Settings) -> str | None:
    """Return the registered model whose ``champion`` alias the service follows, if any.

    Only ``models:/<name>@champion`` URIs are followed: a folder or a pinned version never changes.
    """
    if settings.serve.model_dir is not None:
        return None
    match = _ALIAS_URI.match(settings.serve.model_uri)
    if match is None or match["alias"] != CHAMPION_ALIAS:
        return None
    return match["name"]


def load_predictor(
    settings: Settings,
    bundle: object | None = None,
    version: str | None = None,
    conformal: ConformalStore | None = None,
) -> Predictor:
    """Load the configured bundle (verifying its hashes) and build a forecasting snapshot.

    Args:
        settings: Where the model (``serve.model_dir`` or ``serve.model_uri``) and data are.
        bundle: Reuse this already-loaded bundle (data refresh) instead of loading one.
        version: The registry version of ``bundle`` when one is given.
        conformal: The service's adaptive conformal state (``None``: a fresh one in memory).

    Returns:
        The snapshot, not yet serving.

    Raises:
        Exception: Whatever loading raised (``BundleError`` on a bad hash, MLflow errors,
            ``DataError``); the caller decides what keeps serving.

    """
    import torch

    # One small forecast at a time per request: more intra-op threads only contend for the cores.
    torch.set_num_threads(settings.serve.torch_threads)
    if settings.serve.model_dir is not None:
        source = str(settings.serve.model_dir)
    else:
        source = settings.serve.model_uri
    if bundle is None:
        if settings.serve.model_dir is not None:
            from tickercast.model.bundle import ModelBundle

            bundle = ModelBundle.load(settings.serve.model_dir)
            version = bundle.metadata.get("model_version")
        else:
            from tickercast.model.registry_client import load_from_registry

            bundle, version = load_from_registry(settings.serve.model_uri, settings.tracking_uri)
    return Predictor.build(
        bundle,  # type: ignore[arg-type]
        features_dir=settings.features_dir,
        manifest_path=settings.manifest_path,
        model_version=None if version is None else str(version),
        source=source,
        conformal=conformal,
    )


def _settle_heap(reloaded: bool) -> None:
    """Move the long-lived heap (libraries, model, snapshot) out of the garbage collector's scans.

    With torch, pandas and MLflow loaded a full collection walks ~700k objects (a quarter-second
    pause on a small machine); frozen objects are skipped, so the rare full collections under
    traffic stay short. After a reload the previous snapshot is unfrozen and collected once.
    """
    if reloaded:
        gc.unfreeze()
    gc.collect()
    gc.freeze()


class Reloader:
    """Start-up load plus the background poll of the registry alias and the data manifest."""

    def __init__(self, settings: Settings, holder: PredictorHolder, metrics: ServeMetrics) -> None:
        self.settings = settings
        self.holder = holder
        self.metrics = metrics
        self.model_name = followed_model(settings)
        # Read from DATA_ROOT/serving/aci_state.json on the first load, in the loading thread.
        self.conformal = ConformalStore.for_data_root(settings.data_root)
        self._lock = asyncio.Lock()

    def _publish(self, predictor: Predictor) -> None:
        previous = self.holder.swap(predictor)
        _settle_heap(previous is not None)
        self.metrics.set_model(
            predictor.model_version, predictor.metadata.get("run_id"), predictor.data_version
        )
        self.metrics.set_bands(predictor.bands)
        log.info(
            "serving model version %s (run %s) on data %s: %d tickers",
            predictor.model_version or "-",
            predictor.metadata.get("run_id") or "-",
            predictor.data_version or "-",
            len(predictor.tickers),
        )

    async def load_initial(self) -> bool:
        """Load the model and forecasts for the first time; ``/readyz`` turns 200 on success.

        Returns:
            Whether a snapshot is now serving.

        """
        async with self._lock:
            try:
                predictor = await asyncio.to_thread(load_predictor, self.settings, conformal=self.conformal)
            except Exception as exc:
                self.holder.error = f"model not loaded: {exc}"
                log.error("cannot load the model: %s", exc)
                log.debug("load failure", exc_info=True)
                return False
            self._publish(predictor)
            return True

    def _champion_version(self) -> str | None:
        from tickercast.model.registry_client import champion_version

        assert self.model_name is not None
        version = champion_version(self.settings.tracking_uri, self.model_name)
        return None if version is None else str(version)

    async def check_once(self) -> bool:
        """Poll once: reload when the champion or the curated data changed.

        Returns:
            Whether a new snapshot was swapped in.

        """
        current = self.holder.current
        if current is None:
            return await self.load_initial()
        async with self._lock:
            try:
                champion = await asyncio.to_thread(self._champion_version) if self.model_name else None
                data_version = await asyncio.to_thread(read_data_version, self.settings.manifest_path)
                new_model = champion is not None and champion != current.model_version
                new_data = data_version is not None and data_version != current.data_version
                if not (new_model or new_data):
                    return False
                log.info(
                    "reloading: champion %s -> %s, data %s -> %s",
                    current.model_version,
                    champion or current.model_version,
                    current.data_version,
                    data_version or current.data_version,
                )
                if new_model:
                    predictor = await asyncio.to_thread(
                        load_predictor, self.settings, conformal=self.conformal
                    )
                else:
                    predictor = await asyncio.to_thread(
                        load_predictor, self.settings, current.bundle, current.model_version, self.conformal
                    )
            except Exception as exc:
                self.metrics.reload_failures.inc()
                log.error("reload failed, still serving model version %s: %s", current.model_version, exc)
                log.debug("reload failure", exc_info=True)
                return False
            self._publish(predictor)
            self.metrics.reloads.inc()
            return True

    async def run(self) -> None:
        """Load, then poll every ``serve.reload_interval_s`` seconds until cancelled (0: load only)."""
        await self.load_initial()
        interval = self.settings.serve.reload_interval_s
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            await self.check_once()
