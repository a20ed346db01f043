"""The Minikube scripts: shellcheck-clean, strict mode, and a clear message when a tool is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy import tools
from tests.deploy.conftest import REPO_ROOT

pytestmark = pytest.mark.deploy

SCRIPTS = [
    *sorted((REPO_ROOT / "deploy" / "minikube").glob("*.sh")),
    REPO_ROOT / "deploy" / "docker" / "spark-entrypoint.sh",
]


def test_scripts_exist() -> None:
    names = {path.name for path in SCRIPTS}
    assert {"up.sh", "down.sh", "spark-entrypoint.sh"} <= names


def test_shellcheck_is_clean() -> None:
    result = subprocess.run(
        [tools.shellcheck(), "--external-sources", "--severity=style", *map(str, SCRIPTS)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", ["up.sh", "down.sh", "spark-entrypoint.sh"])
def test_scripts_run_in_strict_mode(script: str) -> None:
    path = next(p for p in SCRIPTS if p.name == script)
    assert path.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in path.read_text()
    assert os.access(path, os.X_OK), f"{path} is not executable"


@pytest.fixture
def path_without(tmp_path: Path):
    """A PATH holding only the basic tools plus fakes for the names given."""

    def _make(*fake: str) -> str:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        for tool in ("dirname", "cat", "printf", "env", "sed", "sort"):
            found = shutil.which(tool)
            if found:
                (bin_dir / tool).symlink_to(found)
        for tool in fake:
            script = bin_dir / tool
            script.write_text('#!/bin/sh\necho "fake $0 must not run" >&2\nexit 99\n')
            script.chmod(0o755)
        return str(bin_dir)

    return _make


@pytest.mark.parametrize(
    ("script", "fakes", "missing"),
    [
        ("up.sh", (), "minikube"),
        ("up.sh", ("minikube",), "docker"),
        ("up.sh", ("minikube", "docker", "kubectl"), "helm"),
        ("down.sh", ("minikube",), "kubectl"),
    ],
)
def test_missing_tool_stops_with_a_clear_message(path_without, script: str, fakes, missing: str) -> None:
    result = subprocess.run(
        ["/bin/bash", str(REPO_ROOT / "deploy" / "minikube" / script)],
        capture_output=True,
        text=True,
        env={"PATH": path_without(*fakes), "HOME": "/nonexistent"},
        timeout=30,
    )
    assert result.returncode == 1
    assert f"error: {missing} is required and was not found on PATH" in result.stderr
    assert "must not run" not in result.stderr  # stopped before calling any tool


def test_down_rejects_unknown_arguments() -> None:
    result = subprocess.run(
        ["/bin/bash", str(REPO_ROOT / "deploy" / "minikube" / "down.sh"), "--everything"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "unknown argument --everything" in result.stderr


def test_up_uses_the_minikube_values_and_waits_for_each_stage() -> None:
    text = (REPO_ROOT / "deploy" / "minikube" / "up.sh").read_text()
    assert 'eval "$(minikube docker-env' in text
    assert "ci/minikube.yaml" in text
    for target in ("preprocess", "train", "serve"):
        assert target in text.split("for target in", 1)[1].split("\n", 1)[0]
    order = [
        text.index(marker)
        for marker in ("wait_job preprocess", "wait_job train", "rollout status", "/predict")
    ]
    assert order == sorted(order)


def _fake_java(tmp_path: Path) -> Path:
    java_home = tmp_path / "jdk"
    (java_home / "bin").mkdir(parents=True)
    java = java_home / "bin" / "java"
    java.write_text('#!/bin/sh\nfor arg in "$@"; do printf "%s\\n" "$arg"; done\n')
    java.chmod(0o755)
    return java_home


def test_spark_entrypoint_starts_an_executor_like_sparks_own_image(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "JAVA_HOME": str(_fake_java(tmp_path)),
        "SPARK_HOME": "/opt/spark",
        "SPARK_LOCAL_DIRS": str(tmp_path / "local"),
        "SPARK_EXECUTOR_MEMORY": "1g",
        "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@driver.ns.svc:7078",
        "SPARK_EXECUTOR_ID": "3",
        "SPARK_EXECUTOR_CORES": "2",
        "SPARK_APPLICATION_ID": "spark-app-1",
        "SPARK_EXECUTOR_POD_IP": "10.0.0.7",
        "SPARK_EXECUTOR_POD_NAME": "tickercast-exec-3",
        # Spark numbers the JVM options; 10 must come after 2.
        "SPARK_JAVA_OPT_0": "-Dspark.driver.port=7078",
        "SPARK_JAVA_OPT_10": "-Dlast=yes=really",
        "SPARK_JAVA_OPT_2": "--add-opens=java.base/java.lang=ALL-UNNAMED",
    }
    result = subprocess.run(
        [str(REPO_ROOT / "deploy" / "docker" / "spark-entrypoint.sh"), "executor"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    args = result.stdout.splitlines()
    assert args[:3] == [
        "-Dspark.driver.port=7078",
        "--add-opens=java.base/java.lang=ALL-UNNAMED",
        "-Dlast=yes=really",
    ]
    assert args[3:5] == ["-Xms1g", "-Xmx1g"]
    assert args[5:7] == ["-cp", "/opt/spark/jars/*"]
    assert args[7] == "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend"
    options = dict(zip(args[8::2], args[9::2], strict=True))
    assert options == {
        "--driver-url": env["SPARK_DRIVER_URL"],
        "--executor-id": "3",
        "--cores": "2",
        "--app-id": "spark-app-1",
        "--hostname": "10.0.0.7",
        "--resourceProfileId": "0",
        "--podName": "tickercast-exec-3",
    }
    assert (tmp_path / "local").is_dir()


def test_spark_entrypoint_runs_any_other_command_as_given() -> None:
    result = subprocess.run(
        [str(REPO_ROOT / "deploy" / "docker" / "spark-entrypoint.sh"), "printf", "%s|", "a b", "c"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (result.returncode, result.stdout) == (0, "a b|c|")
