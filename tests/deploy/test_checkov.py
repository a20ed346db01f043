"""checkov on the rendered chart (every ci/*.yaml) and the Dockerfile: zero failed checks."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.deploy import tools
from tests.deploy.conftest import CI_VALUES, REPO_ROOT, load_yaml

pytestmark = pytest.mark.deploy

CONFIG = REPO_ROOT / "deploy" / "checkov.yaml"
DOCKERFILE = REPO_ROOT / "deploy" / "docker" / "Dockerfile"


@pytest.fixture(scope="module")
def checkov_reports(rendered, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("checkov")
    for path in CI_VALUES:
        (folder / f"{path.stem}.yaml").write_text(yaml.safe_dump_all(rendered[path.stem], sort_keys=False))
    shutil.copy(DOCKERFILE, folder / "Dockerfile")
    result = subprocess.run(
        [tools.checkov(), "--config-file", str(CONFIG), "--directory", str(folder), "--output", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=folder,
    )
    assert result.stdout.strip(), f"checkov printed nothing:\n{result.stderr[-3000:]}"
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    return {report["check_type"]: report for report in reports}


def _failures(report: dict) -> list[str]:
    return [
        f"{check['check_id']} {check['check_name']}: {check['resource']} ({check['file_path']})"
        for check in report["results"]["failed_checks"]
    ]


@pytest.mark.parametrize("framework", ["kubernetes", "dockerfile"])
def test_checkov_finds_no_failed_check(checkov_reports: dict[str, dict], framework: str) -> None:
    report = checkov_reports[framework]
    summary = report["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 100, "checkov checked almost nothing: were the files found?"
    assert summary["failed"] == 0, "\n".join(_failures(report))


def test_kubernetes_skips_are_the_documented_ones(checkov_reports: dict[str, dict]) -> None:
    skipped = checkov_reports["kubernetes"]["results"]["skipped_checks"]
    # Per-resource annotations, only on the helm test Pod (it runs once and serves nothing, so
    # probes do not apply); each carries its reason.
    assert {check["check_id"] for check in skipped} == {"CKV_K8S_8", "CKV_K8S_9"}
    for check in skipped:
        assert check["resource"].startswith("Pod.") and check["resource"].endswith("-test-api")
        assert len(check["check_result"]["suppress_comment"]) > 30, check["check_id"]


def test_every_global_skip_says_why() -> None:
    config = load_yaml(CONFIG)
    assert set(config["framework"]) == {"kubernetes", "dockerfile"}
    assert config["skip-download"] is True  # offline: no call to Prisma Cloud
    lines = CONFIG.read_text().splitlines()
    for check in config["skip-check"]:
        index = next(i for i, line in enumerate(lines) if line.strip() == f"- {check}")
        reason = []
        for line in reversed(lines[:index]):
            if not line.strip().startswith("#"):
                break
            reason.append(line)
        assert reason and check in reason[-1], f"{check} in {CONFIG.name} has no comment saying why"
    assert len(config["skip-check"]) <= 3, "the skip list is meant to stay short"


def test_docs_list_every_skip() -> None:
    docs = (REPO_ROOT / "docs" / "kubernetes.md").read_text()
    for check in [*load_yaml(CONFIG)["skip-check"], "CKV_K8S_8", "CKV_K8S_9"]:
        assert re.search(rf"\b{check}\b", docs), f"docs/kubernetes.md does not mention {check}"
