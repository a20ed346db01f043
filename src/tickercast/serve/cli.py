"""The ``tickercast serve`` command: run the prediction service with uvicorn."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from tickercast.config import ENV_NESTED_DELIMITER, ENV_PREFIX, Settings
from tickercast.errors import UserError

APP_FACTORY = "tickercast.serve.app:create_app_from_env"


def settings_env(settings: Settings) -> dict[str, str]:
    """Return the ``TICKERCAST_*`` variables that rebuild these settings' serving part in a worker.

    Worker processes build their app from the environment (uvicorn imports the factory by name), so
    the flags given to the parent travel as environment variables, which win over a YAML file.

    Args:
        settings: The effective settings of the ``serve`` command.

    Returns:
        Variable names and values; unset optional values are left out.

    """
    env = {
        f"{ENV_PREFIX}DATA_ROOT": str(settings.data_root.resolve()),
        f"{ENV_PREFIX}REGISTERED_MODEL_NAME": settings.registered_model_name,
        f"{ENV_PREFIX}LOG_LEVEL": settings.log_level,
    }
    if settings.mlflow_tracking_uri:
        env[f"{ENV_PREFIX}MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri
    for key, value in settings.serve.model_dump(mode="json").items():
        if value is not None:
            env[f"{ENV_PREFIX}SERVE{ENV_NESTED_DELIMITER}{key.upper()}"] = str(value)
    return env


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to the ``tickercast`` app."""

    @app.command("serve")
    def serve(
        ctx: typer.Context,
        data: Annotated[
            Path | None, typer.Option("--data", help="Data root holding curated/ (and mlflow.db by default).")
        ] = None,
        model_uri: Annotated[
            str | None,
            typer.Option(
                "--model-uri",
                help="MLflow model URI to serve; models:/tickercast-tft@champion (default) tracks the alias.",
            ),
        ] = None,
        model_dir: Annotated[
            Path | None,
            typer.Option(
                "--model-dir", help="Serve a model bundle from this folder instead of the registry."
            ),
        ] = None,
        host: Annotated[str | None, typer.Option(help="Interface to bind (0.0.0.0 in a container).")] = None,
        port: Annotated[int | None, typer.Option(help="TCP port.")] = None,
        workers: Annotated[
            int | None, typer.Option(help="uvicorn worker processes (each loads the model).")
        ] = None,
    ) -> None:
        """Serve next-day forecasts over HTTP (GET /predict, /docs for the API, / for the dashboard)."""
        from tickercast.config import settings_for

        if model_uri is not None and model_dir is not None:
            raise UserError("give either --model-uri or --model-dir, not both")
        overrides = {
            "data_root": data,
            "serve": {
                "model_uri": model_uri,
                "model_dir": model_dir,
                "host": host,
                "port": port,
                "workers": workers,
            },
        }
        settings = settings_for(ctx, overrides)
        if model_uri is not None:
            settings.serve.model_dir = None
        run_server(settings)


def run_server(settings: Settings) -> None:
    """Serve with uvicorn until SIGTERM or Ctrl+C (in-flight requests get ``serve.shutdown_timeout_s``).

    Used by ``tickercast serve`` and by ``tickercast pipeline run --serve``.

    Args:
        settings: Effective settings; ``serve.workers > 1`` starts worker processes that rebuild
            the app from ``TICKERCAST_*`` variables exported here.

    Raises:
        UserError: The model folder or the curated data does not exist.

    """
    import uvicorn

    from tickercast.console import console

    serve_settings = settings.serve
    if serve_settings.model_dir is not None and not serve_settings.model_dir.is_dir():
        raise UserError(f"--model-dir {serve_settings.model_dir} is not a folder holding a model bundle")
    if not settings.features_dir.is_dir():
        raise UserError(f"no curated features at {settings.features_dir}; run `tickercast preprocess` first")
    source = serve_settings.model_dir or serve_settings.model_uri
    console.print(
        f"serving {source} on http://{serve_settings.host}:{serve_settings.port} "
        f"with {serve_settings.workers} worker(s): /docs for the API, / for the dashboard; Ctrl+C stops",
        highlight=False,
    )
    common: dict[str, Any] = {
        "host": serve_settings.host,
        "port": serve_settings.port,
        "log_level": settings.log_level.lower(),
        "access_log": serve_settings.access_log,
        "timeout_graceful_shutdown": serve_settings.shutdown_timeout_s,
        "server_header": False,
    }
    if serve_settings.workers > 1:
        os.environ.update(settings_env(settings))
        uvicorn.run(APP_FACTORY, factory=True, workers=serve_settings.workers, **common)
    else:
        from tickercast.serve.app import create_app

        uvicorn.run(create_app(settings), **common)
