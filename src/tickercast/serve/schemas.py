"""Request and response models of the API; their descriptions become the OpenAPI documentation."""

from __future__ import annotations

import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tickercast.schema import API_TICKER_PATTERN

HistoryValue = float | int | str | bool | None


class Quantiles(BaseModel):
    """The forecast's distribution as prices."""

    p10: float = Field(description="10th percentile of the forecast close (price)")
    p50: float = Field(description="Median of the forecast close (price)")
    p90: float = Field(description="90th percentile of the forecast close (price)")


class Band(BaseModel):
    """The served band of one horizon."""

    lower: float = Field(description="Lower end of the band (price): the served P10")
    upper: float = Field(description="Upper end of the band (price): the served P90")
    level: float = Field(description="Nominal coverage of the band (0.8: P10 to P90)", examples=[0.8])
    calibrated: bool = Field(
        description=(
            "True when the band is the conformal layer's (fitted on the model's walk-forward "
            "residuals and kept on target by adaptive conformal inference); false when it is the "
            "model's raw P10-P90 (a bundle without calibration)"
        )
    )


class PathPoint(BaseModel):
    """The forecast for one trading day after the last close."""

    horizon: int = Field(ge=1, description="Trading days after as_of (1 = the next trading day)")
    forecast_for: datetime.date = Field(description="Trading date (exchange calendar) the forecast is for")
    p10: float = Field(description="Served 10th percentile of the close on forecast_for (price)")
    p50: float = Field(
        description="Served median of the close on forecast_for (price), shrunk toward the last close "
        "by the calibration's skill factor"
    )
    p90: float = Field(description="Served 90th percentile of the close on forecast_for (price)")
    band: Band = Field(description="The served P10-P90 band")
    raw_quantiles: Quantiles = Field(description="The model's own quantiles, before calibration")


class ForecastFields(BaseModel):
    """What every forecast reports."""

    ticker: str = Field(description="Ticker symbol, upper case", examples=["MSFT"])
    predicted_price: float = Field(
        description="Forecast next-day close: the served median (P50), shrunk toward the last close by "
        "the calibration's skill factor (equal to the last close where the model has no measurable skill)"
    )
    change: float = Field(description="Forecast change of the close against the last close, in percent")
    one_diff: float | None = Field(description="Change of the close over the last trading day, in percent")
    three_diff: float | None = Field(
        description="Change of the close over the last 3 trading days, in percent"
    )
    five_diff: float | None = Field(
        description="Change of the close over the last 5 trading days, in percent"
    )
    sentiment: float | None = Field(
        description="Latest news sentiment for the ticker in [-1, 1] (VADER compound; 0 when no news)"
    )
    quantiles: Quantiles = Field(
        description="Served P10, P50 and P90 of the next-day close (the calibrated band when calibrated)"
    )
    raw_quantiles: Quantiles = Field(description="The model's own next-day P10, P50, P90, before calibration")
    calibrated: bool = Field(description="Whether the next-day quantiles are calibrated (see path[].band)")
    path: list[PathPoint] = Field(
        description="The forecast for each trading day from 1 to the model's horizon after as_of, in order"
    )
    last_close: float = Field(description="Close on the as_of date")
    as_of: datetime.date = Field(description="Date of the last data the forecast uses")
    forecast_for: datetime.date = Field(description="Trading date the forecast is for")
    model_version: str | None = Field(
        description="Registry version of the model (null for an unregistered bundle)"
    )
    data_version: str | None = Field(description="Version of the curated dataset the service reads")


class Prediction(ForecastFields):
    """A precomputed next-day forecast."""

    image_url: str = Field(
        description="Path of a PNG chart of recent closes with this forecast", examples=["/plot/MSFT"]
    )


class BatchPrediction(BaseModel):
    """Forecasts for several tickers, in the order asked."""

    predictions: list[Prediction] = Field(description="One forecast per requested ticker")


class ForecastRequest(BaseModel):
    """Recent history of one ticker to forecast from.

    Rows hold either curated columns (``date``, ``close``, indicators... as in the curated dataset)
    or raw OHLCV (``Date, Open, High, Low, Close, Volume``), which the service turns into curated
    features. Market-index columns may be left out: they are taken from the served data by date.
    """

    model_config = ConfigDict(extra="forbid")

    ticker: str = Field(
        pattern=API_TICKER_PATTERN, description="Ticker the history belongs to", examples=["MSFT"]
    )
    history: list[dict[str, HistoryValue]] = Field(
        min_length=1,
        description="Rows oldest to newest (order is not required); one trading day per row",
        examples=[
            [
                {
                    "Date": "2018-12-31",
                    "Open": 101.3,
                    "High": 102.4,
                    "Low": 99.5,
                    "Close": 101.6,
                    "Volume": 3.3e7,
                }
            ]
        ],
    )


class ForecastResult(ForecastFields):
    """A forecast computed on demand from history sent by the caller."""

    input_kind: Literal["raw", "curated"] = Field(description="How the history rows were read")
    rows_used: int = Field(description="Rows of curated history the model received")


class Explanation(BaseModel):
    """What the Temporal Fusion Transformer paid attention to for one ticker's forecast."""

    ticker: str = Field(description="Ticker symbol, upper case")
    model_version: str | None = Field(description="Registry version of the model explained")
    encoder_importance: dict[str, float] = Field(description="Share of each past-input variable (sums to ~1)")
    decoder_importance: dict[str, float] = Field(
        description="Share of each known-future variable (sums to ~1)"
    )
    static_importance: dict[str, float] = Field(description="Share of each static variable (sums to ~1)")
    attention: list[float] = Field(description="Attention over the encoder steps, oldest first")


class HistoryPoint(BaseModel):
    """One trading day of a ticker's recent history."""

    date: datetime.date = Field(description="Trading date")
    close: float = Field(description="Close on that date")


class History(BaseModel):
    """The recent closes the served forecast follows (the same window as the PNG chart)."""

    ticker: str = Field(description="Ticker symbol, upper case")
    points: list[HistoryPoint] = Field(description="Closes of the last ~120 trading days, oldest first")


class TickerList(BaseModel):
    """The tickers with a forecast."""

    tickers: list[str] = Field(description="Ticker symbols, sorted")
    count: int = Field(description="Number of tickers")
    as_of: datetime.date = Field(description="Most recent data date across tickers")


class HorizonSkill(BaseModel):
    """What the calibration window says about one horizon of the model."""

    horizon: int = Field(description="Trading days ahead")
    shrink: float | None = Field(
        description="Median factor: 0 = the random walk (tomorrow = today), 1 = the raw model; "
        "null where the horizon is not calibrated"
    )
    coverage_raw: float | None = Field(description="Share of outcomes inside the raw P10-P90 band")
    coverage_calibrated: float | None = Field(description="Share inside the calibrated band")
    mae_vs_naive: float | None = Field(description="MAE of the shrunk median relative to the random walk")
    n: int | None = Field(description="Settled forecasts in the calibration window")
    skill: str = Field(
        description="The skill in plain words",
        examples=["no measurable skill over the random walk at 5 days (shrink 0.00)"],
    )
    aci_alpha: float | None = Field(
        description="Current adaptive conformal miscoverage of the served band (nominal 0.2)"
    )


class ModelInfo(BaseModel):
    """The model being served."""

    model_config = ConfigDict(protected_namespaces=())

    model_version: str | None = Field(description="Registry version (null for an unregistered bundle)")
    run_id: str | None = Field(description="MLflow run that trained the model")
    trained_at: str | None = Field(description="When training finished (ISO 8601)")
    data_version: str | None = Field(description="Curated dataset version the model was trained on")
    serving_data_version: str | None = Field(description="Curated dataset version the forecasts use")
    test_metrics: dict[str, float | None] = Field(description="Metrics on the held-out test window")
    features: list[str] = Field(description="Input variables of the model")
    source: str = Field(description="Model URI or bundle folder the model was loaded from")
    loaded_at: datetime.datetime = Field(description="When this model and data started serving (UTC)")
    horizon: int = Field(description="Trading days ahead the model forecasts (1 to horizon)")
    trained_through: datetime.date | None = Field(
        description="Last date of the data the model was fitted on (its calibration window follows)"
    )
    calibrated: bool = Field(description="Whether the bundle carries a calibration (conformal layer)")
    horizons: list[HorizonSkill] = Field(
        description="Per horizon: skill shrinkage, calibration coverage and the skill in words"
    )


class LeaderboardRow(BaseModel):
    """One model at one horizon in the walk-forward backtest (the fields of its leaderboard.json)."""

    model_config = ConfigDict(protected_namespaces=(), extra="ignore")

    horizon: int = Field(description="Trading days ahead")
    rank: int = Field(description="Rank by scaled CRPS at this horizon (1 = best)")
    model: str = Field(description="Model name: tft (calibrated), tft_raw, naive, drift, auto_ets, ...")
    champion: bool = Field(False, description="True for the registry's champion model")
    n: int = Field(description="Settled forecasts scored (the same cells for every model)")
    mae: float | None = Field(None, description="MAE of the median close forecast (price units)")
    mae_vs_naive: float | None = Field(
        None, description="MAE relative to the random walk's (below 1 beats it)"
    )
    mae_vs_naive_lo: float | None = Field(None, description="Lower end of the 90% block-bootstrap interval")
    mae_vs_naive_hi: float | None = Field(None, description="Upper end of the 90% block-bootstrap interval")
    mase: float | None = Field(None, description="Mean absolute scaled error of the median log return")
    pinball: float | None = Field(None, description="Mean pinball loss over P10, P50, P90 (log returns)")
    scaled_crps: float | None = Field(None, description="Scaled CRPS (lower is better; the ranking metric)")
    coverage_80: float | None = Field(
        None, description="Share of outcomes inside the P10-P90 band (target 0.8)"
    )
    width_80: float | None = Field(None, description="Mean P10-P90 width relative to the last close")
    direction_accuracy: float | None = Field(None, description="Share of correct up/down calls (0.5 = coin)")


class BacktestOrigins(BaseModel):
    """The forecast origins of a backtest."""

    count: int = Field(description="Number of origins")
    first: datetime.date | None = Field(None, description="First origin (last date a forecast may use)")
    last: datetime.date | None = Field(None, description="Last origin")
    step: int | None = Field(None, description="Trading days between origins")


class BacktestPlot(BaseModel):
    """A plot of the backtest's report."""

    name: str = Field(description="File name in the run's folder", examples=["calibration.png"])
    title: str = Field(description="What the plot shows")
    url: str = Field(description="Path that serves the PNG", examples=["/backtest/plots/calibration.png"])


class HorizonLeaderboard(BaseModel):
    """The leaderboard at one horizon, best first."""

    horizon: int = Field(description="Trading days ahead")
    skill: str | None = Field(None, description="The model under test's skill over the random walk, in words")
    rows: list[LeaderboardRow] = Field(description="Every model, ranked by scaled CRPS")


class Backtest(BaseModel):
    """The latest walk-forward backtest: every model against the baselines on the same rolling origins."""

    run: str = Field(description="The run's folder under DIR/reports/backtest/", examples=["20250102-101500"])
    created_at: datetime.datetime = Field(description="When the run was written (UTC)")
    data_version: str | None = Field(None, description="Curated dataset version the backtest read")
    origins: BacktestOrigins = Field(description="The origins every model forecast from")
    horizon: int = Field(description="Largest horizon scored")
    subject: str | None = Field(None, description="The model under test (tft when it ran)")
    champion: str | None = Field(None, description="Leaderboard name of the registry's champion, if it ran")
    models: list[str] = Field(description="Every model on the leaderboard")
    horizons: list[HorizonLeaderboard] = Field(description="One ranked table per horizon, h = 1 first")
    plots: list[BacktestPlot] = Field(description="The report's plots this service serves")


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"] = Field(description="Always ok when the process answers")


class Readiness(BaseModel):
    """Readiness: whether forecasts can be served."""

    ready: bool = Field(description="True once a model and data are loaded")
    model_version: str | None = Field(None, description="Registry version serving, when ready")
    detail: str | None = Field(None, description="Why the service is not ready")


class ErrorDetail(BaseModel):
    """One problem with a request."""

    loc: list[str | int] = Field(description="Where in the request the problem is")
    msg: str = Field(description="What is wrong")


class ErrorResponse(BaseModel):
    """The body of every error response."""

    detail: str = Field(description="One-line explanation for a person")
    errors: list[ErrorDetail] | None = Field(
        None, description="Field-level problems (validation errors only)"
    )
