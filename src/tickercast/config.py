"""Settings: one object, built by :func:`load_settings`, never at import.

Precedence, lowest first: defaults < YAML file (``--config`` or ``TICKERCAST_CONFIG``) < environment
(``TICKERCAST_*``, nested keys joined by ``__``, e.g. ``TICKERCAST_SPARK__MASTER``) < command-line
flags. :func:`setting_sources` tells where each effective value came from.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from tickercast import schema

ENV_PREFIX = "TICKERCAST_"
ENV_NESTED_DELIMITER = "__"
CONFIG_ENV_VAR = "TICKERCAST_CONFIG"
REGISTERED_MODEL_NAME = "tickercast-tft"
CHAMPION_ALIAS = "champion"

_yaml_values: ContextVar[dict[str, Any] | None] = ContextVar("_yaml_values", default=None)


class ConfigError(ValueError):
    """A settings file or value that cannot be used; the message is meant for the user."""


class _Section(BaseModel):
    """A group of settings; unknown keys are errors, so typos in YAML files are caught."""

    model_config = ConfigDict(extra="forbid")


class SparkSettings(_Section):
    """How the preprocessing job talks to Spark."""

    master: str = Field("local[*]", description="Spark master URL: local[N], spark://host:port or k8s://...")
    driver_memory: str = Field("2g", description="spark.driver.memory for the job's driver")
    shuffle_partitions: PositiveInt = Field(8, description="spark.sql.shuffle.partitions")
    max_bad_fraction: float = Field(
        0.05, ge=0, le=1, description="Fail and publish nothing when more input rows than this are bad"
    )


class ModelParams(_Section):
    """Temporal Fusion Transformer hyper-parameters (``configs/tft.yaml`` holds the defaults)."""

    hidden_size: PositiveInt = Field(16, description="Width of the TFT's internal layers")
    attention_head_size: PositiveInt = Field(2, description="Number of attention heads")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout rate")
    hidden_continuous_size: PositiveInt = Field(8, description="Width of the continuous-variable encoders")
    learning_rate: float = Field(0.01, gt=0, description="Adam learning rate")
    gradient_clip_val: float = Field(0.1, ge=0, description="Gradient norm clip")
    max_encoder_length: PositiveInt = Field(30, description="Trading days of history the model sees")
    batch_size: PositiveInt = Field(64, description="Samples per batch on each process")
    horizon: int = Field(5, ge=1, le=20, description="Trading days ahead the model forecasts (1 to 20)")


class TrainSettings(_Section):
    """How training runs (the model's hyper-parameters live in :class:`ModelParams`)."""

    params_file: Path = Field(Path("configs/tft.yaml"), description="YAML file with model hyper-parameters")
    devices: PositiveInt = Field(2, description="Processes (CPU) or GPUs per node")
    num_nodes: PositiveInt = Field(1, description="Nodes taking part in DDP")
    accelerator: str = Field("auto", description="Lightning accelerator: auto, cpu or gpu")
    max_epochs: PositiveInt = Field(8, description="Upper bound on training epochs")
    patience: PositiveInt = Field(3, description="Early-stopping patience in epochs")
    seed: int = Field(42, description="Random seed for reproducible runs")
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of trading dates used for validation")
    test_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of trading dates held out for test")


class ServeSettings(_Section):
    """The prediction service."""

    host: str = Field("127.0.0.1", description="Interface to bind; 0.0.0.0 inside a container")
    port: int = Field(8000, ge=1, le=65535, description="TCP port")
    workers: PositiveInt = Field(1, description="uvicorn worker processes")
    model_uri: str = Field(
        f"models:/{REGISTERED_MODEL_NAME}@{CHAMPION_ALIAS}", description="MLflow model URI to serve"
    )
    model_dir: Path | None = Field(
        None, description="Serve a bundle from this folder instead of the registry"
    )
    reload_interval_s: float = Field(60.0, ge=0, description="Seconds between registry polls; 0 disables")
    request_timeout_s: float = Field(10.0, gt=0, description="Per-request time limit")
    max_body_bytes: PositiveInt = Field(1_000_000, description="Largest accepted POST body")
    max_history_rows: PositiveInt = Field(2000, description="Most rows accepted by POST /forecast")
    max_batch: PositiveInt = Field(100, description="Most tickers in one /predict/batch call")
    shutdown_timeout_s: PositiveInt = Field(
        20, description="On SIGTERM, seconds to let in-flight requests finish before closing them"
    )
    access_log: bool = Field(False, description="Log every request line (the metrics count them anyway)")
    torch_threads: PositiveInt = Field(
        1, description="torch intra-op threads per worker for on-demand forecasts (1 is fastest for one row)"
    )


class Settings(BaseSettings):
    """The effective configuration of every stage."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
        protected_namespaces=(),
    )

    data_root: Path = Field(Path("data"), description="Folder holding raw/, curated/, models and reports")
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; default MLFLOW_TRACKING_URI, else sqlite under the data root"
    )
    registered_model_name: str = Field(REGISTERED_MODEL_NAME, description="MLflow registered model name")
    log_level: str = Field("INFO", description="Python logging level")
    spark: SparkSettings = SparkSettings()
    model: ModelParams = ModelParams()
    train: TrainSettings = TrainSettings()
    serve: ServeSettings = ServeSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Order the sources: flags > environment > YAML file > defaults."""
        yaml_source = InitSettingsSource(settings_cls, init_kwargs=_yaml_values.get() or {})
        return init_settings, env_settings, yaml_source

    # Derived locations: computed, never configured twice.
    @property
    def raw_dir(self) -> Path:
        """Folder of raw CSVs."""
        return self.data_root / schema.RAW_DIR

    @property
    def curated_dir(self) -> Path:
        """Folder of the published curated dataset."""
        return self.data_root / schema.CURATED_DIR

    @property
    def features_dir(self) -> Path:
        """The curated Parquet dataset."""
        return self.curated_dir / schema.FEATURES_DIR

    @property
    def manifest_path(self) -> Path:
        """The curated dataset's manifest."""
        return self.curated_dir / schema.MANIFEST_FILE

    @property
    def quarantine_dir(self) -> Path:
        """Rejected input rows with reasons."""
        return self.data_root / schema.QUARANTINE_DIR

    @property
    def reports_dir(self) -> Path:
        """Evaluation reports."""
        return self.data_root / "reports"

    @property
    def checkpoints_dir(self) -> Path:
        """Lightning checkpoints."""
        return self.data_root / "checkpoints"

    @property
    def artifacts_dir(self) -> Path:
        """MLflow artifact store of the embedded default tracking store."""
        return self.data_root / "mlartifacts"

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI in force: setting, then ``MLFLOW_TRACKING_URI``, then sqlite."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return os.environ["MLFLOW_TRACKING_URI"]
        return f"sqlite:///{(self.data_root / 'mlflow.db').resolve()}"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return loaded


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_file_from_env(config_file: Path | None = None) -> Path | None:
    """Return the YAML settings file in force: the argument, else ``TICKERCAST_CONFIG``, else none."""
    if config_file is not None:
        return config_file
    env_value = os.environ.get(CONFIG_ENV_VAR)
    return Path(env_value) if env_value else None


def load_settings(config_file: Path | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build the effective settings.

    Args:
        config_file: Optional YAML file; defaults to ``$TICKERCAST_CONFIG`` when set.
        overrides: Values from command-line flags, nested like the settings
            (``{"spark": {"master": "local[2]"}}``); ``None`` values are ignored.

    Returns:
        The validated settings.

    Raises:
        ConfigError: The YAML file is missing or invalid, or a value fails validation.

    """
    from pydantic import ValidationError

    path = config_file_from_env(config_file)
    yaml_data = _read_yaml(path) if path else {}
    token = _yaml_values.set(yaml_data)
    try:
        return Settings(**_drop_none(overrides or {}))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from None
    finally:
        _yaml_values.reset(token)


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            nested = _drop_none(value)
            if nested:
                cleaned[key] = nested
        elif value is not None:
            cleaned[key] = value
    return cleaned


def _leaves(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _leaves(value, f"{dotted}.")
        else:
            yield dotted, value


def _has_key(values: Mapping[str, Any], dotted: str) -> bool:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def setting_sources(
    settings: Settings, config_file: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> list[tuple[str, Any, str]]:
    """List every effective setting with the source it came from.

    Args:
        settings: The settings returned by :func:`load_settings` for the same arguments.
        config_file: The YAML file passed to :func:`load_settings`, if any.
        overrides: The command-line overrides passed to :func:`load_settings`, if any.

    Returns:
        ``(dotted key, value, source)`` triples; the source is ``flag``, ``env NAME``, the YAML
        file's path, or ``default``.

    """
    path = config_file_from_env(config_file)
    yaml_data = _read_yaml(path) if path else {}
    flags = _drop_none(overrides or {})
    rows = []
    for dotted, value in _leaves(settings.model_dump(mode="json")):
        env_name = ENV_PREFIX + dotted.replace(".", ENV_NESTED_DELIMITER).upper()
        if _has_key(flags, dotted):
            source = "flag"
        elif env_name in os.environ:
            source = f"env {env_name}"
        elif _has_key(yaml_data, dotted):
            source = str(path)
        else:
            source = "default"
        rows.append((dotted, value, source))
    return rows


def merge_overrides(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge several override mappings, later ones winning; used to combine flag groups."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = _deep_merge(merged, layer)
    return merged


def settings_for(ctx: Any, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build the settings for a command from the global ``--config`` and the command's own flags.

    Args:
        ctx: The command's typer (click) context; its root carries ``--config``.
        overrides: Nested flag values; ``None`` entries mean "flag not given".

    Returns:
        The effective settings.

    """
    config_file = (ctx.find_root().obj or {}).get("config_file")
    return load_settings(config_file, overrides)
