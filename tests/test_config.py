from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tickercast.cli import app
from tickercast.config import ConfigError, load_settings, setting_sources


def test_precedence_defaults_yaml_env_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text("data_root: from-yaml\nspark:\n  master: local[1]\n  driver_memory: 3g\n")
    monkeypatch.setenv("TICKERCAST_SPARK__MASTER", "local[2]")

    settings = load_settings(config, {"spark": {"driver_memory": "4g"}})

    assert settings.data_root == Path("from-yaml")  # yaml beats default
    assert settings.spark.master == "local[2]"  # env beats yaml
    assert settings.spark.driver_memory == "4g"  # flag beats everything
    assert settings.serve.port == 8000  # default
    sources = {
        key: source
        for key, _, source in setting_sources(settings, config, {"spark": {"driver_memory": "4g"}})
    }
    assert sources["data_root"] == str(config)
    assert sources["spark.master"] == "env TICKERCAST_SPARK__MASTER"
    assert sources["spark.driver_memory"] == "flag"
    assert sources["serve.port"] == "default"


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  devices: 3\n")
    monkeypatch.setenv("TICKERCAST_CONFIG", str(config))
    assert load_settings().train.devices == 3


def test_derived_paths_and_tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(overrides={"data_root": tmp_path})
    assert settings.features_dir == tmp_path / "curated" / "features"
    assert settings.tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert settings.tracking_uri == "http://127.0.0.1:5000"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("spark: [1, 2", "not valid YAML"),
        ("- a list", "mapping"),
        ("spark:\n  master: 3\n  bogus: 1", "bogus"),
    ],
)
def test_bad_config_files_give_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_settings(config)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(Path("/nonexistent/tickercast.yaml"))


def test_config_show_cli_reports_sources(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["config", "show", "--data", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "data_root" in result.output and "flag" in result.output
    assert "spark.master" in result.output and "local[*]" in result.output
