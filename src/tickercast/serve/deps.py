"""Dependencies the routes declare: the serving snapshot, the settings, the metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from tickercast.config import Settings
from tickercast.serve.metrics import ServeMetrics
from tickercast.serve.predictor import Predictor, PredictorHolder


async def get_predictor(request: Request) -> Predictor:
    """Return the snapshot serving now; 503 until the first model and data are loaded."""
    holder: PredictorHolder = request.app.state.holder
    predictor = holder.current
    if predictor is None:
        raise HTTPException(503, "the model is not loaded yet; GET /readyz tells when it is")
    return predictor


async def get_holder(request: Request) -> PredictorHolder:
    """Return the app's holder of the serving snapshot (for readiness)."""
    return request.app.state.holder


async def get_settings(request: Request) -> Settings:
    """Return the app's settings."""
    return request.app.state.settings


async def get_metrics(request: Request) -> ServeMetrics:
    """Return the app's metrics."""
    return request.app.state.metrics


PredictorDep = Annotated[Predictor, Depends(get_predictor)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[ServeMetrics, Depends(get_metrics)]
HolderDep = Annotated[PredictorHolder, Depends(get_holder)]
