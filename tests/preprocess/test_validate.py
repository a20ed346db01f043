"""Quarantine: every reason on hand-made bad files, duplicates, whole files, empty files, the CLI
summary, and how the reader splits records (quoted line breaks, unclosed quotes, extra fields)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.spark

HEADER = "Date,Symbol,Open,High,Low,Close,Volume"
GOOD = [
    "2024-01-02,GOOD,10,11,9,10.5,100",
    "2024-01-03,GOOD,10,11,9,10.2,100",
    "2024-01-04,GOOD,10,11,9,10.4,100",
    "2024-01-05,GOOD,10,11,9,10.1,100",
    "2024-01-08 00:00:00-05:00,GOOD,10,11,9,10.3,100",  # yfinance style: the date as written
]
BAD = {
    "2024-13-01,GOOD,10,11,9,10,100": "unparseable date",
    "2024-01-09,GOOD,abc,11,9,10,100": "unparseable number: Open",
    "2024-01-10,GOOD,10,11,9,,100": "missing field: Close",
    "2024-01-11,GOOD,0,11,9,10,100": "non-positive price: Open",
    "2024-01-12,GOOD,10,9,11,10,100": "high < low",
    "2024-01-16,GOOD,12,11,9,10,100": "open outside [low, high]",
    "2024-01-17,GOOD,10,11,9,12,100": "close outside [low, high]",
    "2024-01-18,GOOD,10,11,9,10,-5": "negative volume",
    "2099-01-02,GOOD,10,11,9,10,100": "future date",
    "2024-01-19,bad sym,10,11,9,10,100": "bad symbol",
}


def _write(root: Path, kind: str, name: str, lines: list[str]) -> None:
    folder = root / "raw" / kind
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(f"{line}\n" for line in lines))


@pytest.fixture(scope="module")
def bad_run(spark, tmp_path_factory: pytest.TempPathFactory):
    """One run of the CLI over files holding every kind of problem (publishing despite them)."""
    from typer.testing import CliRunner

    from tickercast.cli import app

    root = tmp_path_factory.mktemp("bad")
    _write(root, "prices", "a.csv", [HEADER, *GOOD, *BAD])
    # "b 100%.csv" sorts last: its conflicting row for 2024-01-03 wins, its exact copy of 2024-01-02
    # is dropped. Spark reports its path URL-encoded (b%20100%25.csv): the job still finds its header.
    _write(root, "prices", "b 100%.csv", [HEADER, GOOD[0], "2024-01-03,GOOD,10,11,9,10.9,100"])
    _write(root, "prices", "c.csv", ["Date,Symbol,Open,High,Low,Vol", "2024-01-02,OTHER,1,2,0.5,9"] * 1)
    _write(root, "prices", "d.csv", [])
    _write(root, "prices", "e.csv", [HEADER])
    _write(
        root,
        "news",
        "n.csv",
        [
            "published_at,Symbol,headline",
            '2024-01-03T10:00:00-05:00,GOOD,"Great results, strong growth"',
            "yesterday,GOOD,Something happened",
            "2099-01-01T10:00:00+00:00,GOOD,From the future",
        ],
    )
    _write(root, "indices", "i.csv", ["Date,Symbol,Close", "2024-01-02,^GSPC,4700", "2024-01-03,^GSPC,-1"])
    _write(
        root, "sentiment", "s.csv", ["Date,Symbol,sentiment", "2024-01-04,GOOD,0.5", "2024-01-05,GOOD,1.5"]
    )
    result = CliRunner().invoke(app, ["preprocess", "--data", str(root), "--max-bad-fraction", "1"])
    return result, root


def test_every_reason_is_quarantined_with_its_record(bad_run) -> None:
    result, root = bad_run
    assert result.exit_code == 0, result.output
    quarantine = pd.read_parquet(root / "quarantine")
    prices = quarantine[quarantine["source_file"] == "prices/a.csv"]
    got = dict(zip(prices["record"], prices["reason"], strict=True))
    expected = {**BAD, "2024-01-03,GOOD,10,11,9,10.2,100": "superseded"}
    assert got == expected
    others = set(zip(quarantine["source_file"], quarantine["reason"], strict=True)) - set(
        zip(prices["source_file"], prices["reason"], strict=True)
    )
    assert others == {
        ("prices/c.csv", "missing columns: Close, Volume"),
        ("news/n.csv", "unparseable date"),
        ("news/n.csv", "future date"),
        ("indices/i.csv", "non-positive price: Close"),
        ("sentiment/s.csv", "sentiment outside [-1, 1]"),
    }
    whole_file = quarantine[quarantine["source_file"] == "prices/c.csv"]
    assert whole_file["record"].tolist() == ["Date,Symbol,Open,High,Low,Vol"]
    manifest = pd.read_json(root / "curated" / "manifest.json", typ="series")
    assert set(quarantine["run_id"]) == {manifest["run_id"]}


def test_valid_rows_survive_and_the_last_file_wins(bad_run) -> None:
    _, root = bad_run
    curated = pd.read_parquet(root / "curated" / "features").sort_values("date")
    assert curated["symbol"].unique().tolist() == ["GOOD"]
    assert [str(d) for d in curated["date"]] == [
        "2024-01-02",
        "2024-01-03",
        "2024-01-04",
        "2024-01-05",
        "2024-01-08",
    ]
    assert curated.loc[curated["date"] == dt.date(2024, 1, 3), "close"].item() == 10.9
    observed = curated.set_index("date")["sentiment_observed"].to_dict()
    assert observed[dt.date(2024, 1, 3)] == 1 and observed[dt.date(2024, 1, 4)] == 1
    assert curated["mkt_gspc_close"].tolist()[:1] == [4700.0]


def test_counts_warnings_and_summary(bad_run) -> None:
    result, root = bad_run
    manifest = pd.read_json(root / "curated" / "manifest.json", typ="series")
    counts = manifest["counts"]
    # a.csv 15 + "b 100%.csv" 2 + c.csv 1 rows; news 3, indices 2, sentiment 2
    assert counts["read"] == 25
    assert counts["duplicates"] == 1
    assert counts["superseded"] == 1
    assert counts["quarantined"] == len(BAD) + 1 + 1 + 2 + 1 + 1
    assert counts["written"] == 5
    assert sorted(manifest["warnings"]) == [
        "empty file: prices/d.csv has no data rows",
        "empty file: prices/e.csv has no data rows",
    ]
    for text in (
        "quarantine reasons",
        "superseded",
        "close outside [low, high]",
        "missing columns: Close, Volume",
        "wrote 5 rows",
    ):
        assert text in result.output


@pytest.fixture(scope="module")
def reader_run(spark, tmp_path_factory: pytest.TempPathFactory):
    """One run over CRLF endings, a blank line, quoted line breaks, an unclosed quote, extra fields."""
    from typer.testing import CliRunner

    from tickercast.cli import app

    root = tmp_path_factory.mktemp("breaks")
    prices = root / "raw" / "prices"
    prices.mkdir(parents=True)
    (prices / "a.csv").write_bytes(
        (
            f"{HEADER}\r\n"
            "2024-01-02,GOOD,10,11,9,10.5,100\r\n"
            "2024-01-15,GOOD,10,11,9,10.5,100,7\r\n"  # one field more than this file's header
            "\r\n"
            '2024-01-03,"GOOD\n",10,11,9,10.5,100\r\n'  # a symbol with a line break: rejected
            '2024-01-04,GOOD,10,11,9,10.4,"100\n"\r\n'  # a number with one: whitespace, as unquoted
            '2024-01-05,"GOOD,10,11,9,10.1,100\r\n'  # never closed: takes every line to the end
            "2024-01-08,GOOD,10,11,9,10.3,100\r\n"
            "2024-01-09,GOOD,10,11,9,10.3,100\r\n"
        ).encode()
    )
    # A wider header than a.csv's: the reader's columns; a.csv is the narrower file now.
    _write(
        root,
        "prices",
        "b.csv",
        [
            f"{HEADER},Adj Close",
            "2024-01-10,GOOD,10,11,9,10.5,100,10.4",
            "2024-01-11,GOOD,10,11,9,10.5,100,10.4,9",  # one field more than the widest header
            "2024-01-12,GOOD,10,11,9,10.5,100,10.4,",  # an empty field more is no field
        ],
    )
    news = root / "raw" / "news"
    news.mkdir(parents=True)
    (news / "n.csv").write_text(
        'published_at,Symbol,headline\n2024-01-02T10:00:00-05:00,GOOD,"Great results,\nstrong growth"\n'
    )
    result = CliRunner().invoke(app, ["preprocess", "--data", str(root), "--max-bad-fraction", "1"])
    return result, root


def test_quoted_line_breaks_follow_rfc_4180(reader_run) -> None:
    from tickercast.features import rules
    from tickercast.features.sentiment import score_headlines

    result, root = reader_run
    assert result.exit_code == 0, result.output
    curated = pd.read_parquet(root / "curated" / "features").sort_values("date")
    assert [str(d) for d in curated["date"]] == ["2024-01-02", "2024-01-04", "2024-01-10", "2024-01-12"]
    quarantine = pd.read_parquet(root / "quarantine").sort_values("record")
    spanning = quarantine[quarantine["reason"] == rules.REASON_SPANS_LINES]
    symbol_break, unclosed = spanning["record"].tolist()
    assert symbol_break.startswith("2024-01-03,GOOD\n,10")
    # The unclosed quote's record holds the lines it took: nothing is lost without a trace.
    assert "\n2024-01-08,GOOD" in unclosed and "\n2024-01-09,GOOD" in unclosed
    first = curated.iloc[0]
    assert first["news_count"] == 1
    expected = score_headlines(pd.Series(["Great results,\nstrong growth"])).item()
    assert first["sentiment"] == pytest.approx(expected)


def test_lines_with_more_fields_than_their_header(reader_run) -> None:
    from tickercast.features import rules

    _, root = reader_run
    quarantine = pd.read_parquet(root / "quarantine")
    extra = quarantine[quarantine["reason"] != rules.REASON_SPANS_LINES]
    reason = f"{rules.REASON_MALFORMED}: more fields than the header"
    assert sorted(zip(extra["source_file"], extra["record"], extra["reason"], strict=True)) == [
        ("prices/a.csv", "2024-01-15,GOOD,10,11,9,10.5,100,7", reason),
        ("prices/b.csv", "2024-01-11,GOOD,10,11,9,10.5,100,10.4,9", reason),
    ]
