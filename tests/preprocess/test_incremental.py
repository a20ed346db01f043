"""When a run can build on the published dataset (the Spark diff itself is tested in test_job)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tickercast import schema
from tickercast.config import load_settings
from tickercast.preprocess.incremental import previous_output
from tickercast.preprocess.manifest import FEATURE_SPEC


def _published(root: Path, **fields: object) -> object:
    settings = load_settings(None, {"data_root": root})
    settings.features_dir.mkdir(parents=True)
    manifest = {
        "schema_version": schema.SCHEMA_VERSION,
        "feature_spec": FEATURE_SPEC,
        "run_id": "r1",
        "created_at": "2026-01-01T00:00:00+00:00",
        "mode": "full",
        "data_version": "0123456789abcdef",
        "calendar": {"first_date": "2025-01-02", "last_date": "2025-12-31", "trading_dates": 250},
        **fields,
    }
    settings.manifest_path.write_text(json.dumps(manifest))
    return settings


def test_a_published_dataset_is_built_on(tmp_path: Path) -> None:
    previous, reason = previous_output(_published(tmp_path), full=False)
    assert previous is not None and previous.calendar.trading_dates == 250
    assert reason == ""


def test_full_never_reads_the_manifest(tmp_path: Path) -> None:
    settings = _published(tmp_path)
    settings.manifest_path.write_bytes(b"\xff\xfe not utf-8")
    assert previous_output(settings, full=True) == (None, "--full")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\xff\xfe not utf-8", "the previous manifest cannot be read"),
        (b"{not json", "the previous manifest cannot be read"),
        (b"[]", "the previous manifest cannot be read"),
    ],
)
def test_a_broken_manifest_means_a_full_run(tmp_path: Path, content: bytes, reason: str) -> None:
    settings = _published(tmp_path)
    settings.manifest_path.write_bytes(content)
    assert previous_output(settings, full=False) == (None, reason)


def test_other_rules_or_missing_output_mean_a_full_run(tmp_path: Path) -> None:
    assert previous_output(load_settings(None, {"data_root": tmp_path / "none"}), full=False) == (
        None,
        "no previous output",
    )
    other = _published(tmp_path / "other", feature_spec="0000000000000000")
    assert previous_output(other, full=False) == (None, "the previous output was made with other rules")
    no_features = _published(tmp_path / "gone")
    no_features.features_dir.rmdir()
    assert previous_output(no_features, full=False) == (None, "no previous features")
