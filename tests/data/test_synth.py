from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tickercast import schema
from tickercast.data.headlines import build_bank
from tickercast.data.synth import MIN_DAYS, generate_market, make_symbols
from tickercast.errors import UserError
from tickercast.features.calendar import holidays, is_trading_day
from tickercast.features.sentiment import score_headlines

from .conftest import SYNTH_ARGS, parse_price_dates, read_raw

YF_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}( 00:00:00[+-]\d{2}:\d{2})?$")
NEWS_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_arguments_give_byte_identical_files(synth_root: Path, tmp_path: Path) -> None:
    generate_market(tmp_path, **SYNTH_ARGS)
    again = _files(tmp_path)
    assert again == _files(synth_root)
    assert any(name.startswith("raw/news/") for name in again)


def test_another_seed_gives_other_prices(synth_root: Path, tmp_path: Path) -> None:
    generate_market(tmp_path, **{**SYNTH_ARGS, "seed": SYNTH_ARGS["seed"] + 1})
    ours = read_raw(tmp_path, schema.RAW_PRICES)["Close"].astype(float)
    theirs = read_raw(synth_root, schema.RAW_PRICES)["Close"].astype(float)
    assert len(ours) == len(theirs)
    assert not np.allclose(ours, theirs)


def test_price_and_index_files_follow_the_contract(synth_root: Path) -> None:
    for kind, symbols in ((schema.RAW_PRICES, None), (schema.RAW_INDICES, {"^GSPC", "^VIX"})):
        for path in schema.raw_dir(synth_root, kind).glob("*.csv"):
            header = path.read_text().splitlines()[0].split(",")
            assert tuple(header) == schema.PRICE_COLUMNS, path
        frame = read_raw(synth_root, kind)
        assert frame["Date"].str.match(YF_STAMP).all()
        assert frame["Symbol"].map(lambda s: bool(schema.SYMBOL_RE.match(s))).all()
        if symbols:
            assert set(frame["Symbol"]) == symbols
        dates = parse_price_dates(frame["Date"])
        assert all(is_trading_day(d) for d in set(dates))
        assert not frame.duplicated(["Symbol", "Date"]).any()
        per_symbol = frame.assign(d=dates).groupby("Symbol")["d"].nunique()
        assert (per_symbol == SYNTH_ARGS["days"]).all()
    prices = read_raw(synth_root, schema.RAW_PRICES)
    assert prices["Symbol"].nunique() == SYNTH_ARGS["tickers"]
    # both date styles of the contract appear
    assert prices["Date"].str.len().isin([10]).any() and prices["Date"].str.len().isin([25]).any()


def test_ohlc_invariants_hold_on_every_row(synth_root: Path) -> None:
    for kind in (schema.RAW_PRICES, schema.RAW_INDICES):
        frame = read_raw(synth_root, kind)
        o, h, lo, c = (frame[col].astype(float) for col in ("Open", "High", "Low", "Close"))
        volume = frame["Volume"].astype("int64")
        assert (lo > 0).all()
        assert (lo <= o).all() and (lo <= c).all()
        assert (o <= h).all() and (c <= h).all()
        assert (volume >= 0).all()
    assert (read_raw(synth_root, schema.RAW_PRICES)["Volume"].astype("int64") > 0).all()


def test_calendar_skips_weekends_and_holidays(synth_root: Path) -> None:
    dates = sorted(set(parse_price_dates(read_raw(synth_root, schema.RAW_INDICES)["Date"])))
    assert all(d.weekday() < 5 for d in dates)
    years = {d.year for d in dates}
    skipped = [h for y in years for h in holidays(y) if dates[0] <= h <= dates[-1]]
    assert skipped, "the window should contain holidays"
    assert not set(skipped) & set(dates)


def _attribute(news: pd.DataFrame, trading_dates: np.ndarray) -> pd.Series:
    """The "as of the close" rule, implemented independently of the simulator."""
    local = pd.to_datetime(news["published_at"], utc=True).dt.tz_convert(schema.MARKET_TIMEZONE)
    day = local.dt.tz_localize(None).dt.normalize().to_numpy().astype("datetime64[D]")
    seconds = (local.dt.hour * 3600 + local.dt.minute * 60 + local.dt.second).to_numpy()
    is_trading = np.isin(day, trading_dates)
    same_day = is_trading & (seconds <= schema.MARKET_CLOSE_HOUR * 3600)
    pos_left = np.searchsorted(trading_dates, day, side="left")
    pos_right = np.searchsorted(trading_dates, day, side="right")
    return pd.Series(trading_dates[np.where(same_day, pos_left, pos_right)], index=news.index)


def test_news_follows_the_contract_and_spreads_over_the_clock(synth_root: Path) -> None:
    news = read_raw(synth_root, schema.RAW_NEWS)
    assert list(news.columns[:3]) == list(schema.NEWS_COLUMNS)
    assert news["published_at"].str.match(NEWS_STAMP).all()
    assert news["Symbol"].map(lambda s: bool(schema.SYMBOL_RE.match(s))).all()
    assert (news["headline"].str.len() > 10).all()
    local = pd.to_datetime(news["published_at"], utc=True).dt.tz_convert(schema.MARKET_TIMEZONE)
    assert (local.dt.hour >= schema.MARKET_CLOSE_HOUR).mean() > 0.1  # after the close
    assert (local.dt.weekday >= 5).mean() > 0.01  # on weekends
    assert news["published_at"].str.endswith("+00:00").any()  # UTC and New York offsets both appear
    assert news["published_at"].str.endswith(("-04:00", "-05:00")).any()


def test_planted_signal_is_recoverable_from_the_headlines(synth_root: Path) -> None:
    truth = json.loads((synth_root / "synth_truth.json").read_text())
    prices = read_raw(synth_root, schema.RAW_PRICES)
    prices["date"] = pd.to_datetime(parse_price_dates(prices["Date"]))
    prices["close"] = prices["Close"].astype(float)
    trading_dates = np.array(sorted(prices["date"].unique()), dtype="datetime64[D]")

    news = read_raw(synth_root, schema.RAW_NEWS)
    news["date"] = pd.to_datetime(_attribute(news, trading_dates))
    news["score"] = score_headlines(news["headline"])
    observed = news.groupby(["Symbol", "date"])["score"].mean().rename("observed")

    # The sentiment a reader computes at the close is exactly the simulator's true sentiment ...
    oracle = pd.read_parquet(synth_root / truth["oracle_file"])
    oracle["date"] = pd.to_datetime(oracle["date"])
    joined = oracle.set_index(["symbol", "date"]).join(observed.rename_axis(["symbol", "date"]), how="left")
    joined["observed"] = joined["observed"].fillna(0.0)
    np.testing.assert_allclose(joined["observed"], joined["sentiment"], atol=1e-9)
    assert (joined["news_count"] > 0).mean() == pytest.approx(truth["news_rate"], abs=0.05)
    np.testing.assert_allclose(joined["planted"], truth["kappa"] * joined["sentiment"])

    # ... and it moves tomorrow's return by kappa per unit, as the truth file says.
    prices = prices.sort_values(["Symbol", "date"])
    prices["next_ret"] = np.log(prices.groupby("Symbol")["close"].shift(-1) / prices["close"])
    frame = prices.set_index(["Symbol", "date"]).join(observed).dropna(subset=["next_ret"])
    frame["observed"] = frame["observed"].fillna(0.0)
    corr = frame["observed"].corr(frame["next_ret"])
    slope = np.polyfit(frame["observed"], frame["next_ret"], 1)[0]
    assert corr == pytest.approx(truth["sentiment_next_return_corr"], abs=1e-6)
    assert truth["sentiment_next_return_corr"] > 0.2
    assert slope == pytest.approx(truth["kappa"], rel=0.25)

    # The oracle's next-day error is what the truth file says, and beats the naive forecast.
    planted = frame["observed"] * truth["kappa"]
    assert (frame["next_ret"] - planted).abs().mean() == pytest.approx(
        truth["oracle_mae_log_return"], rel=1e-6
    )
    assert frame["next_ret"].abs().mean() == pytest.approx(truth["naive_mae_log_return"], rel=1e-6)
    assert truth["oracle_mae_log_return"] < 0.95 * truth["naive_mae_log_return"]


def test_truth_file_carries_the_interface_keys(synth_root: Path) -> None:
    truth = json.loads((synth_root / "synth_truth.json").read_text())
    for key in (
        "seed",
        "kappa",
        "tickers",
        "days",
        "start",
        "end",
        "betas",
        "oracle_mae_log_return",
        "naive_mae_log_return",
        "oracle_file",
    ):
        assert key in truth
    assert truth["seed"] == SYNTH_ARGS["seed"] and truth["days"] == SYNTH_ARGS["days"]
    assert len(truth["betas"]) == SYNTH_ARGS["tickers"]
    prices = read_raw(synth_root, schema.RAW_PRICES)
    assert set(truth["betas"]) == set(prices["Symbol"])
    dates = parse_price_dates(prices["Date"])
    assert str(min(dates)) == truth["start"] and str(max(dates)) == truth["end"]


def test_zero_kappa_plants_nothing(tmp_path: Path) -> None:
    generate_market(tmp_path, tickers=3, days=MIN_DAYS, seed=1, kappa=0.0)
    oracle = pd.read_parquet(tmp_path / "synth_oracle.parquet")
    assert (oracle["planted"] == 0).all() and (oracle["sentiment"] != 0).any()


def test_the_first_tickers_do_not_depend_on_how_many_are_asked_for(tmp_path: Path) -> None:
    generate_market(tmp_path / "a", tickers=2, days=MIN_DAYS, seed=5)
    generate_market(tmp_path / "b", tickers=4, days=MIN_DAYS, seed=5)
    a = read_raw(tmp_path / "a", schema.RAW_PRICES).drop(columns="source_file")
    b = read_raw(tmp_path / "b", schema.RAW_PRICES).drop(columns="source_file")
    pd.testing.assert_frame_equal(a, b[b["Symbol"].isin(set(a["Symbol"]))].reset_index(drop=True))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tickers": 0}, "--tickers"),
        ({"days": 10}, "--days"),
        ({"kappa": float("nan")}, "--kappa"),
        ({"start": datetime.date(2030, 1, 1)}, "not in the past"),
    ],
)
def test_bad_arguments_are_refused_before_writing(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {"tickers": 2, "days": MIN_DAYS, **kwargs}
    with pytest.raises(UserError, match=message):
        generate_market(tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()


def test_existing_different_files_are_not_overwritten(tmp_path: Path) -> None:
    generate_market(tmp_path, tickers=2, days=MIN_DAYS, seed=1)
    before = _files(tmp_path)
    summary = generate_market(tmp_path, tickers=2, days=MIN_DAYS, seed=1)
    assert summary.written == [] and len(summary.unchanged) == len(before)

    with pytest.raises(UserError, match=r"other arguments \(seed 1 -> 2\).*--force") as excinfo:
        generate_market(tmp_path, tickers=2, days=MIN_DAYS, seed=2)
    assert "\n" not in str(excinfo.value)
    assert _files(tmp_path) == before  # nothing half-written, no staging folder left behind

    edited = next((tmp_path / "raw" / "prices").glob("*.csv"))
    edited.write_text(edited.read_text().replace(",", ";", 20))
    with pytest.raises(UserError, match=edited.name):
        generate_market(tmp_path, tickers=2, days=MIN_DAYS, seed=1)

    generate_market(tmp_path, tickers=2, days=MIN_DAYS, seed=2, force=True)
    assert json.loads((tmp_path / "synth_truth.json").read_text())["seed"] == 2
    assert not list(tmp_path.glob(".tickercast-staging-*"))


def test_force_removes_stale_files_of_an_earlier_run(tmp_path: Path) -> None:
    generate_market(tmp_path, tickers=2, days=MIN_DAYS, seed=1, start=datetime.date(2020, 1, 2))
    with pytest.raises(UserError, match="stale"):
        generate_market(tmp_path, tickers=2, days=MIN_DAYS, seed=1)
    summary = generate_market(tmp_path, tickers=2, days=MIN_DAYS, seed=1, force=True)
    assert summary.removed
    years = {p.name.rsplit("-", 1)[1][:4] for p in (tmp_path / "raw" / "prices").glob("*.csv")}
    assert years == {"2023", "2024"}


def test_symbols_never_change_a_headline_score() -> None:
    bank = build_bank()
    symbols = make_symbols(300)
    assert len(set(symbols)) == 300 and all(schema.SYMBOL_RE.match(s) for s in symbols)
    assert make_symbols(20) == symbols[:20]
    rng = np.random.default_rng(0)
    rows = [(s, t) for s in symbols for t in rng.choice(len(bank.score), size=25, replace=False)]
    texts = pd.Series([f"{bank.prefix[t]}{s}{bank.suffix[t]}" for s, t in rows])
    np.testing.assert_array_equal(score_headlines(texts).to_numpy(), bank.score[[t for _, t in rows]])


def test_headline_bank_spans_both_tones() -> None:
    bank = build_bank()
    assert bank.score.min() < -0.8 and bank.score.max() > 0.8
    assert (bank.score[bank.tone == 0] > 0).all() and (bank.score[bank.tone == 1] < 0).all()
    assert (bank.score[bank.tone == 2] == 0).all()
