from __future__ import annotations

import datetime as dt

from tickercast.features.calendar import holidays, is_trading_day, trading_days_ending, trading_days_from


def _dates(*items: str) -> tuple[dt.date, ...]:
    return tuple(dt.date.fromisoformat(i) for i in items)


def test_holidays_match_the_published_nyse_calendars() -> None:
    # NYSE's published holiday lists for these years
    assert holidays(2021) == _dates(
        "2021-01-01",
        "2021-01-18",
        "2021-02-15",
        "2021-04-02",
        "2021-05-31",
        "2021-07-05",
        "2021-09-06",
        "2021-11-25",
        "2021-12-24",
    )
    assert holidays(2022) == _dates(
        "2022-01-17",
        "2022-02-21",
        "2022-04-15",
        "2022-05-30",
        "2022-06-20",
        "2022-07-04",
        "2022-09-05",
        "2022-11-24",
        "2022-12-26",
    )
    assert holidays(2024) == _dates(
        "2024-01-01",
        "2024-01-15",
        "2024-02-19",
        "2024-03-29",
        "2024-05-27",
        "2024-06-19",
        "2024-07-04",
        "2024-09-02",
        "2024-11-28",
        "2024-12-25",
    )


def test_trading_day_ranges() -> None:
    days = trading_days_from(dt.date(2021, 12, 31), 3).astype(object).tolist()
    assert days == list(_dates("2021-12-31", "2022-01-03", "2022-01-04"))
    days = trading_days_ending(dt.date(2024, 12, 29), 3).astype(object).tolist()
    assert days == list(_dates("2024-12-24", "2024-12-26", "2024-12-27"))
    assert not is_trading_day(dt.date(2024, 3, 29)) and is_trading_day(dt.date(2024, 3, 28))
