"""Hyper-parameter files and user-facing errors of `tickercast train`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.factories import PYTHON, REPO, tickercast_env
from tickercast.config import load_settings
from tickercast.errors import UserError
from tickercast.train.fit import resolve_params


def test_default_params_file_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    monkeypatch.chdir(REPO)
    expected = yaml.safe_load((REPO / "configs" / "tft.yaml").read_text())
    params = resolve_params(load_settings())
    assert params.model_dump() == {**params.model_dump(), **expected}


def test_params_file_overrides_and_accepts_a_model_section(tmp_path: Path) -> None:
    flat = tmp_path / "flat.yaml"
    flat.write_text("hidden_size: 12\nlearning_rate: 0.003\n")
    nested = tmp_path / "nested.yaml"
    nested.write_text("model:\n  hidden_size: 24\n")
    settings = load_settings(overrides={"train": {"params_file": flat}})
    assert (resolve_params(settings).hidden_size, resolve_params(settings).learning_rate) == (12, 0.003)
    assert resolve_params(load_settings(overrides={"train": {"params_file": nested}})).hidden_size == 24


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("hidden_sise: 8\n", "hidden_sise"),
        ("dropout: 2\n", "dropout"),
        ("- 1\n", "mapping"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_bad_params_file_is_a_user_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        resolve_params(load_settings(overrides={"train": {"params_file": path}}))


def test_missing_named_params_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        resolve_params(load_settings(overrides={"train": {"params_file": tmp_path / "nope.yaml"}}))


@pytest.mark.slow
def test_train_without_curated_data_says_what_to_run(tmp_path: Path) -> None:
    result = subprocess.run(
        [PYTHON, "-m", "tickercast", "train", "--data", str(tmp_path), "--devices", "1"],
        cwd=REPO,
        env=tickercast_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "run `tickercast preprocess" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
