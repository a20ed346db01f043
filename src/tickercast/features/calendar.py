"""The exchange calendar: trading days (weekdays minus the NYSE's regular holidays) and calendar columns.

This is the one calendar of the project: the simulator's dates, the next trading day a forecast is
for, a served history's ``time_idx`` and the ``day_of_week``, ``day_of_month``, ``month`` columns
all come from here.

The rules are the exchange's standing ones (New Year's Day, Martin Luther King Jr. Day, Washington's
Birthday, Good Friday, Memorial Day, Juneteenth from 2022, Independence Day, Labor Day, Thanksgiving,
Christmas, with the usual weekend observance). One-off closures (national days of mourning,
hurricanes) are not modelled: the simulator only needs a realistic, deterministic calendar.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tickercast import schema


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> dt.date:
    """Return the n-th (1-based) given weekday of a month; ``n = -1`` means the last one."""
    if n > 0:
        first = dt.date(year, month, 1)
        return first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    last = dt.date(year + (month == 12), month % 12 + 1, 1) - dt.timedelta(days=1)
    return last - dt.timedelta(days=(last.weekday() - weekday) % 7)


def _easter(year: int) -> dt.date:
    """Return Western Easter Sunday (anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


def _observed(day: dt.date) -> dt.date:
    """Move a fixed-date holiday off a weekend: Saturday -> Friday, Sunday -> Monday."""
    if day.weekday() == 5:
        return day - dt.timedelta(days=1)
    if day.weekday() == 6:
        return day + dt.timedelta(days=1)
    return day


@lru_cache(maxsize=512)
def holidays(year: int) -> tuple[dt.date, ...]:
    """Return the exchange holidays of one year that fall on weekdays.

    Args:
        year: Calendar year.

    Returns:
        The holiday dates, sorted.

    """
    days = []
    new_year = dt.date(year, 1, 1)
    if new_year.weekday() != 5:  # a Saturday New Year's Day is not observed on Friday Dec 31
        days.append(_observed(new_year))
    days.append(_nth_weekday(year, 1, 0, 3))  # Martin Luther King Jr. Day
    days.append(_nth_weekday(year, 2, 0, 3))  # Washington's Birthday
    days.append(_easter(year) - dt.timedelta(days=2))  # Good Friday
    days.append(_nth_weekday(year, 5, 0, -1))  # Memorial Day
    if year >= 2022:
        days.append(_observed(dt.date(year, 6, 19)))  # Juneteenth
    days.append(_observed(dt.date(year, 7, 4)))
    days.append(_nth_weekday(year, 9, 0, 1))  # Labor Day
    days.append(_nth_weekday(year, 11, 3, 4))  # Thanksgiving
    days.append(_observed(dt.date(year, 12, 25)))
    return tuple(sorted(d for d in days if d.weekday() < 5))


def _holiday_array(first_year: int, last_year: int) -> np.ndarray:
    return np.array(
        [d for year in range(first_year, last_year + 1) for d in holidays(year)], dtype="datetime64[D]"
    )


def is_trading_day(day: dt.date) -> bool:
    """Tell whether the exchange is open on ``day`` under these rules."""
    return day.weekday() < 5 and day not in holidays(day.year)


def trading_days_from(start: dt.date, count: int) -> np.ndarray:
    """Return ``count`` consecutive trading days, the first on or after ``start``.

    Args:
        start: First candidate date.
        count: Number of trading days wanted (at least 1).

    Returns:
        A ``datetime64[D]`` array.

    """
    span_years = count // 240 + 2
    hol = _holiday_array(start.year - 1, start.year + span_years)
    first = np.busday_offset(np.datetime64(start, "D"), 0, roll="forward", holidays=hol)
    return np.busday_offset(first, np.arange(count), roll="forward", holidays=hol)


def trading_days_ending(end: dt.date, count: int) -> np.ndarray:
    """Return ``count`` consecutive trading days, the last on or before ``end``.

    Args:
        end: Last candidate date.
        count: Number of trading days wanted (at least 1).

    Returns:
        A ``datetime64[D]`` array in ascending order.

    """
    span_years = count // 240 + 2
    hol = _holiday_array(end.year - span_years, end.year + 1)
    last = np.busday_offset(np.datetime64(end, "D"), 0, roll="backward", holidays=hol)
    return np.busday_offset(last, -np.arange(count)[::-1], roll="backward", holidays=hol)


def previous_trading_day(day: np.datetime64) -> np.datetime64:
    """Return the trading day strictly before ``day``."""
    year = int(str(day)[:4])
    hol = _holiday_array(year - 1, year)
    return np.busday_offset(day, -1, roll="forward", holidays=hol)


def next_trading_day(day: dt.date) -> dt.date:
    """Return the first trading day strictly after ``day``."""
    return trading_days_from(day + dt.timedelta(days=1), 1)[0].astype(dt.date)


def trading_days_between(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Count trading days in ``[start, end)`` elementwise (negative where ``end`` is before ``start``).

    Args:
        start: ``datetime64[D]`` dates (or one date).
        end: ``datetime64[D]`` dates (or one date).

    Returns:
        int64 counts: ``trading_days_between(d, next_trading_day(d)) == 1`` on a trading day ``d``.

    """
    start, end = np.asarray(start, dtype="datetime64[D]"), np.asarray(end, dtype="datetime64[D]")
    years = np.concatenate([start.ravel(), end.ravel()]).astype("datetime64[Y]").astype(int) + 1970
    if not years.size:
        return np.zeros(np.broadcast(start, end).shape, dtype=np.int64)
    hol = _holiday_array(int(years.min()) - 1, int(years.max()) + 1)
    return np.busday_count(start, end, holidays=hol).astype(np.int64)


def calendar_columns(dates: pa.Array | pa.ChunkedArray) -> dict[str, pa.Array]:
    """``day_of_week`` (0 = Monday), ``day_of_month`` and ``month`` of Arrow dates, as int64."""
    return {
        schema.DAY_OF_WEEK: pc.cast(pc.day_of_week(dates), pa.int64()),
        schema.DAY_OF_MONTH: pc.cast(pc.day(dates), pa.int64()),
        schema.MONTH: pc.cast(pc.month(dates), pa.int64()),
    }


def add_calendar_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with the calendar columns of its ``date`` column (dates or timestamps), as int64."""
    dates = pa.array(pd.to_datetime(frame[schema.DATE]).to_numpy().astype("datetime64[D]"))
    columns = calendar_columns(dates)
    return frame.assign(**{name: values.to_numpy(zero_copy_only=False) for name, values in columns.items()})
