"""Building, writing and publishing the curated manifest (no Spark)."""

from __future__ import annotations

import json
from pathlib import Path

from tickercast import schema
from tickercast.config import load_settings
from tickercast.manifest import read_manifest
from tickercast.preprocess.manifest import (
    FEATURE_SPEC,
    Content,
    build_manifest,
    publish,
    write_manifest,
)
from tickercast.preprocess.quarantine import COUNT_NAMES, Summary
from tickercast.preprocess.read import InputFile

COUNTS = dict(zip(COUNT_NAMES, (12, 10, 2, 1, 0, 1), strict=True))


def _manifest():
    return build_manifest(
        run_id="r1",
        mode="full",
        inputs=[InputFile("prices", Path("/raw/prices/a.csv"), 120, 7)],
        summary=Summary(COUNTS, {"prices": COUNTS}, {"bad date": 1, "superseded": 1}, []),
        content=Content(
            rows=10,
            data_version="0123456789abcdef",
            columns=["symbol", "date"],
            calendar={"first_date": "2025-01-02", "last_date": "2025-01-15", "trading_dates": 10},
            symbols={"AAA": {"first_date": "2025-01-02", "last_date": "2025-01-15", "rows": 10}},
        ),
        index_symbols=["^GSPC"],
        max_bad_fraction=0.05,
    )


def test_the_manifest_json_has_the_published_keys() -> None:
    payload = _manifest().as_json()
    assert payload["feature_spec"] == FEATURE_SPEC and len(FEATURE_SPEC) == 16
    assert payload["counts"] == {**COUNTS, "written": 10}
    # Curated rows are counted for the whole run only.
    assert payload["counts_by_kind"] == {"prices": COUNTS}
    assert payload["input_files"] == [{"path": "prices/a.csv", "kind": "prices", "size": 120, "mtime_ns": 7}]
    assert payload["calendar"]["trading_dates"] == 10 and payload["max_bad_fraction"] == 0.05


def test_written_and_published_manifest_reads_back(tmp_path: Path) -> None:
    settings = load_settings(None, {"data_root": tmp_path})
    staging = settings.curated_dir / ".staging-r1"
    for name in ("features", "quarantine"):
        (staging / name).mkdir(parents=True)
    manifest = _manifest()
    write_manifest(manifest, staging)
    publish(staging, settings)
    assert not staging.exists()
    assert read_manifest(settings.manifest_path) == manifest
    copy = settings.features_dir / "_manifest.json"
    assert copy.read_text() == settings.manifest_path.read_text()
    assert json.loads(copy.read_text()) == manifest.as_json()
    assert settings.manifest_path.name == schema.MANIFEST_FILE
