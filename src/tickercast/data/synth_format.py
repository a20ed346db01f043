"""Fast, deterministic text formatting for the simulator's CSV files.

Dates and timestamps are formatted once per calendar day or second of day and then looked up, and
tables go to disk through pyarrow's CSV writer, so writing millions of rows stays cheap.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from tickercast import schema
from tickercast.features.calendar import previous_trading_day

_TZ = ZoneInfo(schema.MARKET_TIMEZONE)


def _utc_offset(moment: dt.datetime) -> dt.timedelta:
    """Return the UTC offset of an aware datetime (never None for a ZoneInfo-aware one)."""
    offset = moment.utcoffset()
    assert offset is not None
    return offset


@dataclass(frozen=True)
class TradingCalendar:
    """Trading days and the string lookups used to format dates and timestamps fast."""

    days: np.ndarray  # datetime64[D], the trading days

    @cached_property
    def day_int(self) -> np.ndarray:
        """Trading days as days since 1970."""
        return self.days.astype("int64")

    @cached_property
    def prev_int(self) -> np.ndarray:
        """For each trading day, the trading day before it (days since 1970)."""
        first_prev = previous_trading_day(self.days[0]).astype("int64")
        return np.concatenate(([first_prev], self.day_int[:-1]))

    @cached_property
    def lo(self) -> int:
        """First calendar day (as days since 1970) covered by the lookups."""
        return int(self.prev_int[0]) - 1

    @cached_property
    def span(self) -> np.ndarray:
        """Every calendar day from ``lo`` to two days after the last trading day."""
        return np.arange(self.lo, int(self.day_int[-1]) + 3).astype("datetime64[D]")

    @cached_property
    def iso(self) -> np.ndarray:
        """``YYYY-MM-DD`` per calendar day in ``span``."""
        return np.datetime_as_string(self.span, unit="D").astype(object)

    @cached_property
    def offset_s(self) -> np.ndarray:
        """New York's UTC offset in seconds at noon of each calendar day in ``span``."""
        return np.array(
            [
                int(
                    _utc_offset(
                        dt.datetime.fromisoformat(f"{d}T12:00:00").replace(tzinfo=_TZ)
                    ).total_seconds()
                )
                for d in self.iso
            ],
            dtype="int64",
        )

    @cached_property
    def offset_text(self) -> np.ndarray:
        """``-05:00`` / ``-04:00`` per calendar day in ``span``."""
        out = []
        for seconds in self.offset_s:
            sign = "-" if seconds < 0 else "+"
            hours, minutes = divmod(abs(int(seconds)) // 60, 60)
            out.append(f"{sign}{hours:02d}:{minutes:02d}")
        return np.array(out, dtype=object)

    def index(self, day_int: np.ndarray) -> np.ndarray:
        """Position in ``span`` of calendar days given as days since 1970."""
        return np.asarray(day_int, dtype="int64") - self.lo

    def price_dates(self, start: int, stop: int, yfinance_style: bool) -> np.ndarray:
        """Date strings of trading days ``start:stop``: ISO dates or yfinance midnight timestamps."""
        idx = self.index(self.day_int[start:stop])
        if not yfinance_style:
            return self.iso[idx]
        return self.iso[idx] + " 00:00:00" + self.offset_text[idx]


def write_csv(path: Path, header: tuple[str, ...], table: Any, quote: bool) -> None:
    """Write a pyarrow table as CSV under our own unquoted header; quote strings only if asked."""
    import pyarrow.csv as pacsv

    with path.open("wb") as sink:
        sink.write((",".join(header) + "\n").encode())
        pacsv.write_csv(
            table,
            sink,
            write_options=pacsv.WriteOptions(
                include_header=False, quoting_style="needed" if quote else "none"
            ),
        )


def price_table(dates: np.ndarray, symbols: list[str], cols: dict[str, np.ndarray]) -> Any:
    """Build a price table, ticker-major: every date of the first symbol, then the next symbol, ..."""
    import pyarrow as pa

    n, length = len(symbols), len(dates)
    date_idx = pa.array(np.tile(np.arange(length), n))
    sym_idx = pa.array(np.repeat(np.arange(n), length))
    arrays = [pa.array(dates.tolist()).take(date_idx), pa.array(symbols).take(sym_idx)]
    arrays += [pa.array(values.reshape(-1)) for values in cols.values()]
    return pa.Table.from_arrays(arrays, names=["Date", "Symbol", *cols])


def year_slices(calendar: TradingCalendar) -> list[tuple[int, int, int]]:
    """Return ``(year, start, stop)`` index ranges of the trading days of each calendar year."""
    years = calendar.days.astype("datetime64[Y]").astype("int64") + 1970
    bounds = np.flatnonzero(np.diff(years)) + 1
    starts = np.concatenate(([0], bounds))
    stops = np.concatenate((bounds, [len(years)]))
    return [(int(years[a]), int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


_CLOCK: np.ndarray | None = None


def clock_strings() -> np.ndarray:
    """``HH:MM:SS`` for every second of a day."""
    global _CLOCK
    if _CLOCK is None:
        seconds = np.arange(86_400)
        _CLOCK = np.array(
            [
                f"{h:02d}:{m:02d}:{s:02d}"
                for h, m, s in zip(seconds // 3600, seconds // 60 % 60, seconds % 60, strict=True)
            ],
            dtype=object,
        )
    return _CLOCK
