"""The Dockerfile and .dockerignore, read statically (no Docker engine runs the tests)."""

from __future__ import annotations

import re

import pytest

from tests.deploy.conftest import CHART, REPO_ROOT, load_yaml

pytestmark = pytest.mark.deploy

DOCKERFILE = REPO_ROOT / "deploy" / "docker" / "Dockerfile"


def _stages() -> dict[str, list[str]]:
    """Instructions (continuation lines joined) of each stage, by stage name."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, flags=re.IGNORECASE)
        if match:
            current = match.group(2)
            stages[current] = [line]
        elif current:
            stages[current].append(line)
    return stages


def _instructions(stage: str, keyword: str) -> list[str]:
    return [line for line in _stages()[stage] if line.upper().startswith(keyword + " ")]


def test_three_targets_share_one_pinned_base() -> None:
    stages = _stages()
    assert {"base", "preprocess", "train", "serve"} <= set(stages)
    base_image = stages["base"][0].split()[1]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base_image), base_image
    for target in ("preprocess", "train", "serve"):
        assert stages[target][0].split()[1] == "base", target


@pytest.mark.parametrize("target", ["preprocess", "train", "serve"])
def test_final_stages_run_as_a_fixed_non_root_uid(target: str) -> None:
    users = _instructions(target, "USER")
    assert users, f"{target} sets no USER"
    uid = int(users[-1].split()[1].split(":")[0])
    assert uid > 10000
    assert uid == load_yaml(CHART / "values.yaml")["podSecurityContext"]["runAsUser"]


@pytest.mark.parametrize("target", ["preprocess", "train", "serve"])
def test_final_stages_carry_no_build_tools_or_caches(target: str) -> None:
    text = " ".join(_stages()[target])
    assert "build-essential" not in text and "gcc" not in text
    assert "pip install" not in text, "packages are installed in the build stages only"
    for line in _instructions(target, "RUN"):
        if "apt-get install" in line:
            assert "--no-install-recommends" in line
            assert "rm -rf /var/lib/apt/lists/*" in line
    base_env = " ".join(_instructions("base", "ENV"))
    assert "PIP_NO_CACHE_DIR=1" in base_env
    copies = _instructions(target, "COPY")
    assert any(f"--from=build-{target} /opt/venv /opt/venv" in line for line in copies)


def test_targets_install_their_own_extras() -> None:
    assert any('".[spark]"' in line for line in _instructions("build-preprocess", "RUN"))
    train = " ".join(_instructions("build-train", "RUN"))
    serve = " ".join(_instructions("build-serve", "RUN"))
    assert '".[train]"' in train and '".[serve]"' in serve
    # CPU torch by default, the CUDA build through a build argument.
    assert "https://download.pytorch.org/whl/${TORCH_VARIANT}" in train
    assert "ARG TORCH_VARIANT=cpu" in _stages()["build-train"]
    assert "https://download.pytorch.org/whl/cpu" in serve
    assert "torch==${TORCH_VERSION}" in train and "ARG TORCH_VERSION=2.13.0" in _stages()["build-train"]


def test_only_preprocess_has_java() -> None:
    assert "openjdk-17-jre-headless" in " ".join(_stages()["preprocess"])
    for target in ("train", "serve", "base"):
        assert "openjdk" not in " ".join(_stages()[target])


def test_serve_has_a_healthcheck_without_curl() -> None:
    (healthcheck,) = _instructions("serve", "HEALTHCHECK")
    assert "/healthz" in healthcheck and "urllib.request" in healthcheck
    assert "curl" not in healthcheck
    assert _instructions("serve", "EXPOSE") == ["EXPOSE 8000"]


def test_caches_and_home_point_at_tmp() -> None:
    env = " ".join(_instructions("base", "ENV"))
    for setting in ("HOME=/tmp", "MPLCONFIGDIR=/tmp/", "XDG_CACHE_HOME=/tmp/"):
        assert setting in env
    assert "SPARK_LOCAL_DIRS=/tmp/" in " ".join(_instructions("preprocess", "ENV"))


def test_dockerignore_keeps_data_and_environments_out() -> None:
    ignored = {
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for entry in (
        ".venv",
        "data",
        "mlruns",
        ".git",
        "mlartifacts",
        "mlflow.db",
        "checkpoints",
        "lightning_logs",
        "tests",
    ):
        assert entry in ignored, entry
    # What the build needs must not be ignored.
    for needed in ("src", "configs", "pyproject.toml", "README.md", "deploy/docker"):
        assert needed not in ignored
