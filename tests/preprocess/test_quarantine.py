"""Counting rejected rows and the bad-row gate (no Spark: the counts are small Python rows)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickercast.errors import UserError
from tickercast.preprocess.quarantine import FileStat, Summary, check_gate, summarise
from tickercast.preprocess.read import InputFile
from tickercast.preprocess.validate import BAD, BAD_FILE, DUPLICATE, SUPERSEDED, VALID


def _file(name: str) -> InputFile:
    kind, base = name.split("/")
    return InputFile(kind, Path("/raw") / kind / base, 10, 0)


INPUTS = [_file("prices/a.csv"), _file("prices/b.csv"), _file("news/n.csv"), _file("news/empty.csv")]
STATS = [
    FileStat("prices", "prices/a.csv", VALID, None, 90),
    FileStat("prices", "prices/a.csv", BAD, "bad date", 4),
    FileStat("prices", "prices/b.csv", DUPLICATE, None, 3),
    FileStat("prices", "prices/b.csv", SUPERSEDED, "superseded", 2),
    FileStat("news", "news/n.csv", BAD_FILE, "missing columns", 5),
    FileStat("news", "news/n.csv", BAD, "bad date", 1),
]


def test_summarise_counts_each_outcome_overall_and_per_kind() -> None:
    summary = summarise(STATS, INPUTS)
    assert summary.counts == {
        "read": 105,
        "valid": 90,
        "quarantined": 12,
        "bad": 10,
        "duplicates": 3,
        "superseded": 2,
    }
    assert summary.counts_by_kind["news"] == {
        "read": 6,
        "valid": 0,
        "quarantined": 6,
        "bad": 6,
        "duplicates": 0,
        "superseded": 0,
    }
    assert list(summary.reasons.items()) == [("bad date", 5), ("missing columns", 5), ("superseded", 2)]
    assert summary.warnings == ["empty file: news/empty.csv has no data rows"]


def test_the_gate_passes_a_run_within_the_limit() -> None:
    check_gate(summarise(STATS, INPUTS), max_bad_fraction=0.10)


@pytest.mark.parametrize(
    ("summary", "limit", "message"),
    [
        (summarise(STATS, INPUTS), 0.05, r"10 of 105 input rows \(9.5%\) are bad.*Reasons: bad date \(5\)"),
        (Summary(dict.fromkeys(("read", "bad"), 0), {}, {}, []), 0.05, "hold no data rows"),
        (
            summarise([FileStat("news", "news/n.csv", VALID, None, 3)], INPUTS),
            0.05,
            "no valid price rows",
        ),
    ],
)
def test_the_gate_refuses_to_publish(summary: Summary, limit: float, message: str) -> None:
    with pytest.raises(UserError, match=message):
        check_gate(summary, limit)
