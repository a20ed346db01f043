"""What the pipeline remembers between runs, and how it decides that inputs have not changed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tickercast.config import load_settings
from tickercast.pipeline import runner, state


def _raw(root: Path, kind: str, name: str, text: str) -> Path:
    path = root / "raw" / kind / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_raw_fingerprint_follows_content_and_names_only(tmp_path: Path) -> None:
    _raw(tmp_path, "prices", "a.csv", "Date,Symbol,Open,High,Low,Close,Volume\n2018-01-02,MSFT,1,2,1,2,10\n")
    _raw(tmp_path, "indices", "gspc.csv", "Date,Symbol,Close\n2018-01-02,^GSPC,2700\n")
    (tmp_path / "raw" / "prices" / "notes.txt").write_text("not an input")
    first = state.raw_fingerprint(state.hash_raw_files(tmp_path))

    # Touching a file without changing it, or adding a non-CSV file, changes nothing.
    os.utime(tmp_path / "raw" / "prices" / "a.csv", (1, 1))
    (tmp_path / "raw" / "prices" / "more-notes.md").write_text("still not an input")
    assert state.raw_fingerprint(state.hash_raw_files(tmp_path)) == first

    # New content, a new file, or a renamed file each give a new fingerprint.
    _raw(tmp_path, "prices", "a.csv", "Date,Symbol,Open,High,Low,Close,Volume\n2018-01-02,MSFT,1,2,1,3,10\n")
    changed = state.raw_fingerprint(state.hash_raw_files(tmp_path))
    assert changed != first
    _raw(tmp_path, "news", "n.csv", "published_at,Symbol,headline\n")
    added = state.raw_fingerprint(state.hash_raw_files(tmp_path))
    assert added not in (first, changed)
    (tmp_path / "raw" / "news" / "n.csv").rename(tmp_path / "raw" / "news" / "m.csv")
    assert state.raw_fingerprint(state.hash_raw_files(tmp_path)) != added


def test_hash_cache_is_used_only_while_size_and_mtime_match(tmp_path: Path) -> None:
    path = _raw(tmp_path, "prices", "a.csv", "Date,Symbol\n")
    hashes = state.hash_raw_files(tmp_path)
    rel = "raw/prices/a.csv"
    # A cache entry that matches the file's stat is trusted (that is what keeps reruns fast)...
    cached = {rel: {**hashes[rel], "sha256": "cached"}}
    assert state.hash_raw_files(tmp_path, cached)[rel]["sha256"] == "cached"
    # ...and one that does not is recomputed.
    path.write_text("Date,Symbol,Close\n")
    assert state.hash_raw_files(tmp_path, cached)[rel]["sha256"] not in ("cached", hashes[rel]["sha256"])


def test_state_round_trips_and_an_unreadable_state_means_nothing_done(tmp_path: Path) -> None:
    assert state.load_state(tmp_path) == {}
    state.save_state(tmp_path, {"train": {"run_id": "abc"}})
    assert state.load_state(tmp_path)["train"] == {"run_id": "abc"}
    assert [p.name for p in state.state_path(tmp_path).parent.iterdir()] == [
        "state.json"
    ]  # no temp file left
    state.state_path(tmp_path).write_text("{not json")
    assert state.load_state(tmp_path) == {}
    state.state_path(tmp_path).write_text('{"version": 999, "train": {}}')
    assert state.load_state(tmp_path) == {}


def test_training_fingerprint_changes_with_what_shapes_the_model(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("hidden_size: 8\n")
    base = load_settings(overrides={"data_root": tmp_path, "train": {"params_file": params}})
    fingerprint = state.training_fingerprint(base, devices=2)
    assert state.training_fingerprint(base, devices=2) == fingerprint
    assert state.training_fingerprint(base, devices=1) != fingerprint
    more_epochs = load_settings(
        overrides={"data_root": tmp_path, "train": {"params_file": params, "max_epochs": 3}}
    )
    assert state.training_fingerprint(more_epochs, devices=2) != fingerprint
    params.write_text("hidden_size: 12\n")
    assert state.training_fingerprint(base, devices=2) != fingerprint
    # Where the data lives is not a training input: the data_version says what was trained on.
    elsewhere = load_settings(overrides={"data_root": tmp_path / "other", "train": {"params_file": params}})
    assert state.training_fingerprint(elsewhere, devices=2) == state.training_fingerprint(base, devices=2)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["INFO starting", "error: more than 5% of input rows are bad; nothing published"], "more than 5%"),
        (["Traceback (most recent call last):", '  File "x.py"', "ValueError: boom"], "ValueError: boom"),
        (
            [
                "py4j.protocol.Py4JJavaError: An error occurred while calling o799.persist.",
                ": java.lang.OutOfMemoryError: Java heap space",
                "\tat org.apache.spark.sql.catalyst.expressions.If.mapChildren(conditional.scala:50)",
            ],
            "o799.persist. : java.lang.OutOfMemoryError: Java heap space",
        ),
        (["    at Foo.bar(Foo.java:1)"], "exit code 3"),
        ([], "exit code 3"),
    ],
)
def test_a_failed_stage_is_reported_by_its_error_line(lines: list[str], expected: str) -> None:
    assert expected in runner._error_line(lines, 3)
