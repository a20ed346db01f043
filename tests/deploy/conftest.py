"""Fixtures of the deploy checks: the Helm binary and the chart rendered with every ``ci/*.yaml``."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import tools

REPO_ROOT = tools.REPO_ROOT
CHART = REPO_ROOT / "deploy" / "helm" / "tickercast"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
RELEASE = "tickercast"
NAMESPACE = "tickercast"

Manifest = dict[str, Any]


@pytest.fixture(scope="session")
def helm() -> str:
    return tools.helm()


def run_helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run helm; a failure fails the test with helm's own message."""
    result = subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def render(helm: str) -> Callable[..., list[Manifest]]:
    """Render the chart: ``render("minikube", "--set", "x=y")`` → the list of objects."""
    cache: dict[tuple[str, ...], list[Manifest]] = {}

    def _render(values: str | None = None, *extra: str, release: str = RELEASE) -> list[Manifest]:
        key = (str(values), release, *extra)
        if key not in cache:
            args = ["template", release, str(CHART), "--namespace", NAMESPACE]
            if values:
                args += ["--values", str(CHART / "ci" / f"{values}.yaml")]
            text = run_helm(helm, *args, *extra).stdout
            cache[key] = [doc for doc in yaml.safe_load_all(text) if doc]
        return cache[key]

    return _render


@pytest.fixture(scope="session")
def rendered(render: Callable[..., list[Manifest]]) -> dict[str, list[Manifest]]:
    """Every ``ci/*.yaml`` value set rendered, by file stem."""
    return {path.stem: render(path.stem) for path in CI_VALUES}


def find(objects: list[Manifest], kind: str, component: str | None = None) -> list[Manifest]:
    """Objects of one kind (and ``app.kubernetes.io/component``, when given)."""
    return [
        obj
        for obj in objects
        if obj["kind"] == kind
        and (component is None or obj["metadata"]["labels"].get("app.kubernetes.io/component") == component)
    ]


def one(objects: list[Manifest], kind: str, component: str | None = None) -> Manifest:
    """The single object of one kind and component."""
    found = find(objects, kind, component)
    assert len(found) == 1, f"expected one {kind} ({component}), found {len(found)}"
    return found[0]


def pod_spec(obj: Manifest) -> Manifest | None:
    """The pod spec inside a workload (Pod, Deployment, Job, CronJob), else None."""
    kind = obj["kind"]
    if kind == "Pod":
        return obj["spec"]
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        return obj["spec"]["template"]["spec"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def pod_labels(obj: Manifest) -> dict[str, str]:
    """The labels of the pods a workload creates."""
    if obj["kind"] == "Pod":
        return obj["metadata"]["labels"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return obj["spec"]["template"]["metadata"]["labels"]


def executor_pod_templates(objects: list[Manifest]) -> list[Manifest]:
    """The Spark executor pod templates shipped in ConfigMaps (Spark creates those pods)."""
    return [
        yaml.safe_load(obj["data"]["executor-pod.yaml"])
        for obj in find(objects, "ConfigMap")
        if "executor-pod.yaml" in obj.get("data", {})
    ]


def all_pods(objects: list[Manifest]) -> list[tuple[str, Manifest]]:
    """(name, pod spec) of every pod the release creates, Spark executors included."""
    pods = [(f"{obj['kind']}/{obj['metadata']['name']}", pod_spec(obj)) for obj in objects]
    pods += [("executor-template", template["spec"]) for template in executor_pod_templates(objects)]
    return [(name, spec) for name, spec in pods if spec is not None]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())
