import json
from pathlib import Path

import pytest

from tickercast.manifest import CuratedManifest, ManifestError, find_manifest, read_manifest

MINIMAL = {
    "schema_version": 1,
    "feature_spec": "abc",
    "run_id": "r1",
    "created_at": "2026-01-01T00:00:00+00:00",
    "mode": "full",
    "data_version": "0123456789abcdef",
    "counts": {"read": 10, "valid": 9, "quarantined": 1, "written": 9},
    "symbols": {"MSFT": {"first_date": "2020-01-02", "last_date": "2020-01-15", "rows": 9}},
}


def write(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "manifest.json"
    path.write_bytes(content)
    return path


def test_reads_fields_and_round_trips(tmp_path):
    manifest = read_manifest(write(tmp_path, json.dumps(MINIMAL).encode()))
    assert manifest.data_version == "0123456789abcdef"
    assert manifest.counts.written == 9 and manifest.counts.superseded == 0
    assert manifest.symbols["MSFT"].rows == 9
    assert CuratedManifest.model_validate(manifest.as_json()) == manifest


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe not utf-8", "cannot read"),
        (b"{not json", "not a valid curated manifest"),
        (json.dumps({**MINIMAL, "data_version": None}).encode(), "data_version"),
        (b"[]", "not a valid curated manifest"),
    ],
)
def test_a_broken_manifest_is_a_clear_error(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(ManifestError, match=message):
        read_manifest(path)
    assert find_manifest(path) is None


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="run `tickercast preprocess` first"):
        read_manifest(tmp_path / "manifest.json")
    assert find_manifest(tmp_path / "manifest.json") is None
