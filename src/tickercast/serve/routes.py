"""HTTP routes: validate, ask the predictor, shape the response. Nothing else happens here."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from tickercast.schema import API_TICKER_PATTERN, CLOSE, DATE, MAX_LOOKBACK_ROWS
from tickercast.serve import schemas
from tickercast.serve.deps import HolderDep, MetricsDep, PredictorDep, SettingsDep
from tickercast.serve.history import curated_rows, history_kind, raw_to_curated
from tickercast.serve.metrics import CONTENT_TYPE
from tickercast.serve.plotting import render_forecast_png
from tickercast.serve.predictor import (
    PLOT_DAYS,
    Forecast,
    HistoryError,
    InsufficientHistoryError,
    Predictor,
    UnknownTickerError,
)

router = APIRouter()

_TICKER_RE = re.compile(API_TICKER_PATTERN)
TICKER_HELP = "Ticker symbol (case-insensitive), e.g. MSFT; GET /tickers lists them"
TickerQuery = Annotated[str, Query(pattern=API_TICKER_PATTERN, description=TICKER_HELP, examples=["MSFT"])]
TickerPath = Annotated[str, Path(pattern=API_TICKER_PATTERN, description=TICKER_HELP, examples=["MSFT"])]

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorResponse, "description": text}
    for code, text in (
        (404, "Unknown ticker"),
        (422, "Malformed request"),
        (503, "Model not loaded yet"),
        (504, "Request took too long"),
    )
}
JSON = "application/json"


def _unknown(ticker: str, predictor: Predictor) -> HTTPException:
    return HTTPException(
        404,
        f"unknown ticker {ticker!r}; GET /tickers lists the {len(predictor.tickers)} tickers with a forecast",
    )


def _fields(forecast: Forecast, predictor: Predictor) -> dict[str, Any]:
    return {
        "ticker": forecast.ticker,
        "predicted_price": forecast.p50,
        "change": forecast.change,
        "one_diff": forecast.one_diff,
        "three_diff": forecast.three_diff,
        "five_diff": forecast.five_diff,
        "sentiment": forecast.sentiment,
        "quantiles": schemas.Quantiles(p10=forecast.p10, p50=forecast.p50, p90=forecast.p90),
        "last_close": forecast.last_close,
        "as_of": forecast.as_of,
        "forecast_for": forecast.forecast_for,
        "model_version": predictor.model_version,
        "data_version": predictor.data_version,
    }


def _prediction(ticker: str, predictor: Predictor) -> schemas.Prediction:
    try:
        forecast = predictor.forecast(ticker)
    except UnknownTickerError:
        raise _unknown(ticker, predictor) from None
    return predictor.memo(
        ("prediction", ticker),
        lambda: schemas.Prediction(**_fields(forecast, predictor), image_url=f"/plot/{ticker}"),
    )


@router.get("/predict", response_model=schemas.Prediction, responses=ERRORS, tags=["forecasts"])
async def predict(ticker: TickerQuery, predictor: PredictorDep, request: Request) -> Response:
    """Next-day forecast for one ticker, precomputed when the model was loaded."""
    # The hottest route: the encoded answer is cached per snapshot, and the metrics are taken from
    # the request rather than through a second dependency (each costs a dependency-solving pass).
    ticker = ticker.upper()
    model = _prediction(ticker, predictor)
    body = predictor.memo(("prediction-json", ticker), lambda: model.model_dump_json().encode())
    request.app.state.metrics.forecasts_served_predict.inc()
    return Response(body, media_type=JSON)


@router.get("/predict/batch", response_model=schemas.BatchPrediction, responses=ERRORS, tags=["forecasts"])
async def predict_batch(
    tickers: Annotated[
        str, Query(description="Comma-separated tickers, e.g. MSFT,NVDA", examples=["MSFT,NVDA"])
    ],
    predictor: PredictorDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> schemas.BatchPrediction:
    """Next-day forecasts for several tickers at once."""
    wanted = list(dict.fromkeys(part.strip().upper() for part in tickers.split(",") if part.strip()))
    if not wanted:
        raise HTTPException(422, "tickers is empty; pass a comma-separated list such as MSFT,NVDA")
    if len(wanted) > settings.serve.max_batch:
        raise HTTPException(422, f"{len(wanted)} tickers asked; at most {settings.serve.max_batch} per call")
    malformed = [ticker for ticker in wanted if not _TICKER_RE.match(ticker)]
    if malformed:
        raise HTTPException(422, f"malformed ticker {malformed[0][:20]!r}: expected {API_TICKER_PATTERN}")
    unknown = [ticker for ticker in wanted if ticker not in predictor.forecasts]
    if unknown:
        raise HTTPException(
            404,
            f"unknown ticker(s) {', '.join(unknown[:10])}; GET /tickers lists the tickers with a forecast",
        )
    predictions = [_prediction(ticker, predictor) for ticker in wanted]
    metrics.forecasts_served.labels("batch").inc(len(predictions))
    return schemas.BatchPrediction(predictions=predictions)


@router.post(
    "/forecast",
    response_model=schemas.ForecastResult,
    responses={**ERRORS, 413: {"model": schemas.ErrorResponse, "description": "Body too large"}},
    tags=["forecasts"],
)
async def forecast(
    request: schemas.ForecastRequest, predictor: PredictorDep, settings: SettingsDep, metrics: MetricsDep
) -> schemas.ForecastResult:
    """Forecast the next day from history you send (raw OHLCV or curated rows), computed now."""
    limit = settings.serve.max_history_rows
    if len(request.history) > limit:
        raise HTTPException(422, f"history has {len(request.history)} rows; at most {limit} are accepted")
    ticker = request.ticker.upper()
    try:
        kind = history_kind(request.history)
        result, rows_used = await run_in_threadpool(
            _forecast_from_rows, predictor, ticker, kind, request.history
        )
    except HistoryError as exc:
        raise HTTPException(422, str(exc)) from None
    metrics.forecasts_served.labels("forecast").inc()
    return schemas.ForecastResult(**_fields(result, predictor), input_kind=kind, rows_used=rows_used)


def _forecast_from_rows(
    predictor: Predictor, ticker: str, kind: str, rows: list[dict[str, Any]]
) -> tuple[Forecast, int]:
    if kind == "raw":
        frame = raw_to_curated(rows, ticker, keep=predictor.min_history_rows + MAX_LOOKBACK_ROWS)
    else:
        frame = curated_rows(rows, predictor.dtypes)
    try:
        return predictor.forecast_history(ticker, frame), predictor.min_history_rows
    except InsufficientHistoryError as exc:
        if kind == "raw":
            needed = exc.needed + MAX_LOOKBACK_ROWS - 1
            raise HistoryError(
                f"raw history has {len(rows)} rows; the model needs at least {needed} "
                f"({exc.needed} rows after the {MAX_LOOKBACK_ROWS}-row indicator warm-up)"
            ) from None
        raise


@router.get(
    "/plot/{ticker}",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"image/png": {}}, "description": "PNG chart"}},
    tags=["forecasts"],
)
async def plot(ticker: TickerPath, predictor: PredictorDep) -> Response:
    """Chart of the last ~120 trading days with the forecast and its P10-P90 band (PNG)."""
    ticker = ticker.upper()
    try:
        forecast, history = predictor.forecast(ticker), predictor.history(ticker)
    except UnknownTickerError:
        raise _unknown(ticker, predictor) from None
    key = ("plot", ticker)
    png = await run_in_threadpool(
        predictor.memo, key, lambda: render_forecast_png(history, forecast, days=PLOT_DAYS)
    )
    return Response(png, media_type="image/png", headers={"Cache-Control": "public, max-age=300"})


@router.get("/history/{ticker}", response_model=schemas.History, responses=ERRORS, tags=["forecasts"])
async def history(ticker: TickerPath, predictor: PredictorDep) -> schemas.History:
    """Recent closes (last ~120 trading days) behind a ticker's forecast; the dashboard charts them."""
    ticker = ticker.upper()
    try:
        rows = predictor.history(ticker)
    except UnknownTickerError:
        raise _unknown(ticker, predictor) from None
    return predictor.memo(
        ("history", ticker),
        lambda: schemas.History(
            ticker=ticker,
            points=[
                schemas.HistoryPoint(date=day, close=float(close))
                for day, close in zip(rows[DATE], rows[CLOSE], strict=True)
            ],
        ),
    )


@router.get("/explain/{ticker}", response_model=schemas.Explanation, responses=ERRORS, tags=["forecasts"])
async def explain(ticker: TickerPath, predictor: PredictorDep) -> schemas.Explanation:
    """Variable importances and encoder attention behind a ticker's forecast."""
    ticker = ticker.upper()
    try:
        explanation = await run_in_threadpool(predictor.explain, ticker)
    except UnknownTickerError:
        raise _unknown(ticker, predictor) from None
    return schemas.Explanation(
        ticker=ticker,
        model_version=predictor.model_version,
        encoder_importance=explanation.get("encoder_importance", {}),
        decoder_importance=explanation.get("decoder_importance", {}),
        static_importance=explanation.get("static_importance", {}),
        attention=[float(value) for value in explanation.get("attention", [])],
    )


@router.get("/tickers", response_model=schemas.TickerList, responses=ERRORS, tags=["service"])
async def tickers(predictor: PredictorDep) -> schemas.TickerList:
    """Tickers with a forecast."""
    return schemas.TickerList(
        tickers=list(predictor.tickers), count=len(predictor.tickers), as_of=predictor.latest_date
    )


@router.get("/model", response_model=schemas.ModelInfo, responses=ERRORS, tags=["service"])
async def model(predictor: PredictorDep) -> schemas.ModelInfo:
    """Describe the model being served: version, run, test metrics, training time and data version."""
    metadata = predictor.metadata
    return schemas.ModelInfo(
        model_version=predictor.model_version,
        run_id=metadata.get("run_id"),
        trained_at=None if metadata.get("trained_at") is None else str(metadata["trained_at"]),
        data_version=metadata.get("data_version"),
        serving_data_version=predictor.data_version,
        test_metrics={str(k): _number(v) for k, v in (metadata.get("test_metrics") or {}).items()},
        features=[str(name) for name in metadata.get("features") or []],
        source=predictor.source,
        loaded_at=predictor.loaded_at,
    )


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


@router.get("/healthz", response_model=schemas.Health, tags=["service"])
async def healthz() -> schemas.Health:
    """Liveness: the process is up and answering."""
    return schemas.Health(status="ok")


@router.get(
    "/readyz",
    response_model=schemas.Readiness,
    responses={503: {"model": schemas.Readiness, "description": "Not ready"}},
    tags=["service"],
)
async def readyz(holder: HolderDep, response: Response) -> schemas.Readiness:
    """Readiness: 200 once a model and data are loaded, 503 before (or when loading failed)."""
    current = holder.current
    if current is None:
        response.status_code = 503
        return schemas.Readiness(ready=False, detail=holder.error or "loading the model and data")
    return schemas.Readiness(ready=True, model_version=current.model_version)


@router.get("/metrics", response_class=Response, tags=["service"])
async def metrics_endpoint(metrics: MetricsDep) -> Response:
    """Prometheus metrics in the text exposition format."""
    return Response(metrics.render(), media_type=CONTENT_TYPE)
