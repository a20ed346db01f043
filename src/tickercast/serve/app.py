"""The FastAPI application: wiring of routes, middleware, error handlers and the model loader.

``create_app(settings)`` builds an app; its lifespan starts loading the model in the background, so
``/healthz`` answers at once and ``/readyz`` says 503 until forecasts are ready. Error handlers make
sure every error is a one-line JSON ``{"detail": ...}`` and that no traceback reaches a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tickercast import __version__
from tickercast.config import Settings, load_settings
from tickercast.serve.metrics import ServeMetrics
from tickercast.serve.middleware import BodySizeLimitMiddleware, MetricsMiddleware, TimeoutMiddleware
from tickercast.serve.predictor import PredictorHolder
from tickercast.serve.reload import Reloader

log = logging.getLogger(__name__)

DESCRIPTION = """Next-day stock price forecasts from a Temporal Fusion Transformer.

Forecasts for every ticker are computed when the model loads and answered from memory; a new
`champion` model in the registry is picked up without downtime. Errors are JSON `{"detail": ...}`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the prediction service.

    Args:
        settings: Effective settings (data root, model source, limits); defaults to
            :func:`tickercast.config.load_settings` (``TICKERCAST_*`` environment, YAML file).

    Returns:
        The ASGI app; the model loads when its lifespan starts.

    """
    from tickercast.serve.dashboard import router as dashboard_router
    from tickercast.serve.routes import router

    settings = settings or load_settings()
    holder = PredictorHolder()
    metrics = ServeMetrics()
    reloader = Reloader(settings, holder, metrics)
    metrics.track_data_age(lambda: holder.current.latest_date if holder.current is not None else None)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(reloader.run(), name="tickercast-model-loader")
        app.state.loader_task = task
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title="tickercast", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.reloader = reloader
    app.include_router(router)
    app.include_router(dashboard_router)
    _install_error_handlers(app)
    # Added last runs first: metrics see every request, including those refused by the limits.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.serve.max_body_bytes)
    app.add_middleware(TimeoutMiddleware, seconds=settings.serve.request_timeout_s)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def create_app_from_env() -> FastAPI:
    """Build the app from ``TICKERCAST_*`` settings: the factory each uvicorn worker process calls."""
    from tickercast.console import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)


def _install_error_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's only 400 is a body it cannot decode (not UTF-8, say): a malformed body, like bad JSON.
            return JSONResponse({"detail": "request body is not valid JSON (or not UTF-8)"}, status_code=422)
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg", "invalid"))}
            for error in exc.errors()
        ]
        raw = exc.errors()
        if raw and raw[0].get("type") == "json_invalid":
            position = raw[0].get("loc", ("body", "?"))[-1]
            detail = f"request body is not valid JSON (error at character {position})"
            return JSONResponse({"detail": detail, "errors": errors}, status_code=422)
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(first["loc"]) or "request"
        summary = f"invalid {where}: {first['msg']}"
        if len(errors) > 1:
            summary += f" (and {len(errors) - 1} more)"
        return JSONResponse({"detail": summary, "errors": errors}, status_code=422)

    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; the server log has the details"}, status_code=500)

    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected_error)
