from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tickercast import schema
from tickercast.data.sample import write_sample

from .conftest import read_raw


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sample")
    write_sample(root)
    return root


def _check_contract(frame: pd.DataFrame) -> None:
    assert frame["Date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert pd.to_datetime(frame["Date"], format="%Y-%m-%d").notna().all()
    assert frame["Symbol"].map(lambda s: bool(schema.SYMBOL_RE.match(s))).all()
    assert not frame.duplicated(["Symbol", "Date"]).any()
    if "Open" in frame:
        o, h, lo, c = (frame[col].astype(float) for col in ("Open", "High", "Low", "Close"))
        assert ((lo > 0) & (lo <= o) & (lo <= c) & (o <= h) & (c <= h)).all()
        assert (frame["Volume"].astype("int64") >= 0).all()
    assert (frame["Close"].astype(float) > 0).all()


def _check_files(root: Path) -> None:
    for path in sorted((root / "raw").rglob("*.csv")):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        required = schema.INDEX_REQUIRED if path.parent.name == schema.RAW_INDICES else schema.PRICE_REQUIRED
        assert set(required) <= set(frame.columns), path
        assert set(frame.columns) <= set(schema.PRICE_COLUMNS + schema.PRICE_OPTIONAL), path
        _check_contract(frame)


def test_default_sample_covers_the_common_window(sample_root: Path) -> None:
    prices = read_raw(sample_root, schema.RAW_PRICES)
    indices = read_raw(sample_root, schema.RAW_INDICES)
    assert sorted(prices["Symbol"].unique()) == ["AMZN", "MSFT", "NVDA"]
    assert sorted(indices["Symbol"].unique()) == ["^GSPC", "^IXIC", "^VIX"]
    both = pd.concat([prices, indices])
    _check_files(sample_root)
    per_symbol = both.groupby("Symbol")["Date"].agg(["min", "max", "count"])
    assert (per_symbol["min"] == "2015-04-01").all()
    assert (per_symbol["max"] == "2018-12-31").all()
    # 945 NYSE sessions from 2015-04-01 to 2018-12-31; every series has all of them, the same ones
    assert (per_symbol["count"] == 945).all()
    assert both.groupby("Symbol")["Date"].apply(frozenset).nunique() == 1
    assert not (sample_root / "raw" / "news").exists()


def test_sample_values_match_the_sources(sample_root: Path) -> None:
    prices = read_raw(sample_root, schema.RAW_PRICES).set_index(["Symbol", "Date"])
    assert float(prices.loc[("MSFT", "2015-04-01"), "Close"]) == pytest.approx(40.72)
    assert float(prices.loc[("MSFT", "2018-12-31"), "Close"]) == pytest.approx(101.57)
    indices = read_raw(sample_root, schema.RAW_INDICES).set_index(["Symbol", "Date"])
    assert float(indices.loc[("^GSPC", "2018-12-31"), "Close"]) == pytest.approx(2506.850098)
    assert float(indices.loc[("^VIX", "2018-12-31"), "Close"]) == pytest.approx(25.42)
    vix_header = (
        (schema.raw_dir(sample_root, schema.RAW_INDICES) / "sample-vix.csv").read_text().splitlines()[0]
    )
    assert vix_header == "Date,Symbol,Close"


def test_full_history_writes_every_series_whole(tmp_path: Path) -> None:
    write_sample(tmp_path, full_history=True)
    frame = pd.concat([read_raw(tmp_path, schema.RAW_PRICES), read_raw(tmp_path, schema.RAW_INDICES)])
    _check_files(tmp_path)
    spans = frame.groupby("Symbol")["Date"].agg(["min", "max", "count"])
    expected = {
        "MSFT": ("2015-04-01", "2021-03-31", 1511),
        "NVDA": ("1999-01-22", "2025-02-14", 6558),
        "AMZN": ("1997-05-15", "2020-07-31", 5842),
        "NFLX": ("2018-02-05", "2022-02-04", 1009),
        "TSLA": ("2021-03-23", "2022-03-23", 254),
        "^GSPC": ("1999-01-04", "2018-12-31", 5031),
        "^IXIC": ("1999-01-04", "2018-12-31", 5031),
        "^VIX": ("2014-01-03", "2019-01-03", 1259),  # 1305 rows less 46 holidays marked "."
    }
    assert {s: tuple(row) for s, row in spans.iterrows()} == expected


def test_switching_windows_needs_force(tmp_path: Path, sample_root: Path) -> None:
    from tickercast.errors import UserError

    write_sample(tmp_path, full_history=True)
    with pytest.raises(UserError, match=r"would change.*stale"):
        write_sample(tmp_path)
    summary = write_sample(tmp_path, force=True)
    assert sorted(summary.removed) == ["raw/prices/sample-nflx.csv", "raw/prices/sample-tsla.csv"]
    for path in sample_root.rglob("*.csv"):
        assert (tmp_path / path.relative_to(sample_root)).read_bytes() == path.read_bytes()
