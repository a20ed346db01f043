"""HTTP routes: validate, ask the predictor, shape the response. Nothing else happens here."""

from __future__ import annotations

import datetime
import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from tickercast.schema import API_TICKER_PATTERN, CLOSE, DATE, MAX_LOOKBACK_ROWS
from tickercast.serve import leaderboard, schemas
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
# The most trading days a model may forecast (training refuses more); a request above the served
# model's horizon is refused with the model's own figure, so the schema sets no maximum.
MAX_HORIZON = 20
HorizonQuery = Annotated[
    int | None,
    Query(
        ge=1,
        description=f"Cut the path to the first HORIZON trading days (1 to the served model's horizon, at "
        f"most {MAX_HORIZON}; GET /model tells it); the next-day fields are unchanged",
        examples=[3],
    ),
]

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


def _path(forecast: Forecast, predictor: Predictor, horizon: int | None = None) -> list[schemas.PathPoint]:
    return [
        schemas.PathPoint(
            horizon=point.horizon,
            forecast_for=point.forecast_for,
            p10=point.p10,
            p50=point.p50,
            p90=point.p90,
            band=schemas.Band(
                lower=point.p10, upper=point.p90, level=predictor.band_level, calibrated=point.calibrated
            ),
            raw_quantiles=schemas.Quantiles(p10=point.raw_p10, p50=point.raw_p50, p90=point.raw_p90),
        )
        for point in forecast.path
        if horizon is None or point.horizon <= horizon
    ]


def _fields(forecast: Forecast, predictor: Predictor, horizon: int | None = None) -> dict[str, Any]:
    return {
        "ticker": forecast.ticker,
        "predicted_price": forecast.p50,
        "change": forecast.change,
        "one_diff": forecast.one_diff,
        "three_diff": forecast.three_diff,
        "five_diff": forecast.five_diff,
        "sentiment": forecast.sentiment,
        "quantiles": schemas.Quantiles(p10=forecast.p10, p50=forecast.p50, p90=forecast.p90),
        "raw_quantiles": schemas.Quantiles(p10=forecast.raw_p10, p50=forecast.raw_p50, p90=forecast.raw_p90),
        "calibrated": forecast.calibrated,
        "path": _path(forecast, predictor, horizon),
        "last_close": forecast.last_close,
        "as_of": forecast.as_of,
        "forecast_for": forecast.forecast_for,
        "model_version": predictor.model_version,
        "data_version": predictor.data_version,
    }


def _prediction(ticker: str, predictor: Predictor, horizon: int | None = None) -> schemas.Prediction:
    try:
        forecast = predictor.forecast(ticker)
    except UnknownTickerError:
        raise _unknown(ticker, predictor) from None
    return predictor.memo(
        ("prediction", ticker, horizon),
        lambda: schemas.Prediction(**_fields(forecast, predictor, horizon), image_url=f"/plot/{ticker}"),
    )


def _check_horizon(horizon: int | None, predictor: Predictor) -> int | None:
    """Refuse a horizon the served model lacks (422); return the cut, ``None`` for the full path."""
    if horizon is not None and horizon > predictor.horizon:
        days = "trading day" if predictor.horizon == 1 else "trading days"
        raise HTTPException(
            422,
            f"horizon {horizon} is not available: the served model forecasts 1 to "
            f"{predictor.horizon} {days} ahead",
        )
    # The full path is the same answer with or without the parameter: it shares its cache entry.
    return None if horizon is None or horizon == predictor.horizon else horizon


@router.get("/predict", response_model=schemas.Prediction, responses=ERRORS, tags=["forecasts"])
async def predict(
    ticker: TickerQuery, predictor: PredictorDep, request: Request, horizon: HorizonQuery = None
) -> Response:
    """Forecast for one ticker: the next day and the path over every horizon, precomputed at load."""
    # The hottest route: the encoded answer is cached per snapshot, and the metrics are taken from
    # the request rather than through a second dependency (each costs a dependency-solving pass).
    ticker = ticker.upper()
    cut = _check_horizon(horizon, predictor)
    model = _prediction(ticker, predictor, cut)
    body = predictor.memo(("prediction-json", ticker, cut), lambda: model.model_dump_json().encode())
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
    """Forecasts (next day and path) for several tickers at once."""
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
    """Forecast every horizon from history you send (raw OHLCV or curated rows), computed now."""
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
    """Describe the model being served: version, run, test metrics, horizon and skill per horizon."""
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
        horizon=predictor.horizon,
        trained_through=_date(metadata.get("trained_through")),
        calibrated=predictor.calibration is not None,
        horizons=_skills(predictor),
    )


def _skills(predictor: Predictor) -> list[schemas.HorizonSkill]:
    """Return the bundle's calibration figures (``metadata["calibration"]``) per horizon, in words too."""
    figures = predictor.metadata.get("calibration") or {}
    skipped = predictor.calibration.skipped if predictor.calibration is not None else {}
    alphas = {stats.horizon: stats.alpha for stats in predictor.bands}
    out = []
    for h in range(1, predictor.horizon + 1):
        entry = figures.get(str(h)) or figures.get(h) or {}
        if entry.get("skill"):
            skill = str(entry["skill"])
        elif h in skipped:
            skill = f"not calibrated: {skipped[h]}"
        else:
            skill = "not calibrated: the bundle has no calibration window; the model's raw bands are served"
        n = entry.get("n")
        out.append(
            schemas.HorizonSkill(
                horizon=h,
                shrink=_number(entry.get("shrink")),
                coverage_raw=_number(entry.get("coverage_raw")),
                coverage_calibrated=_number(entry.get("coverage_calibrated")),
                mae_vs_naive=_number(entry.get("mae_vs_naive")),
                n=None if n is None else int(n),
                skill=skill,
                aci_alpha=alphas.get(h),
            )
        )
    return out


def _date(value: Any) -> datetime.date | None:
    if value is None:
        return None
    try:
        return datetime.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


BACKTEST_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": schemas.ErrorResponse, "description": "No backtest has run on this data, or no such plot"},
    422: ERRORS[422],
    504: ERRORS[504],
}


@router.get("/backtest", response_model=schemas.Backtest, responses=BACKTEST_ERRORS, tags=["track record"])
async def backtest(settings: SettingsDep) -> schemas.Backtest:
    """Show the latest walk-forward backtest: every model ranked by scaled CRPS per horizon."""
    try:
        latest = await run_in_threadpool(leaderboard.read_latest, settings.reports_dir)
    except leaderboard.BacktestUnavailable as exc:
        raise HTTPException(404, str(exc)) from None
    return leaderboard.leaderboard(latest)


@router.get(
    "/backtest/plots/{name}",
    response_class=FileResponse,
    responses={**BACKTEST_ERRORS, 200: {"content": {"image/png": {}}, "description": "PNG plot"}},
    tags=["track record"],
)
async def backtest_plot(
    name: Annotated[
        str,
        Path(
            pattern=leaderboard.PLOT_NAME.pattern,
            description="A plot GET /backtest lists, e.g. calibration.png",
            examples=["calibration.png"],
        ),
    ],
    settings: SettingsDep,
) -> FileResponse:
    """Serve a plot of the latest backtest's report (PNG): calibration, PIT, coverage over time, the cone."""
    try:
        path = await run_in_threadpool(leaderboard.plot_file, settings.reports_dir, name)
    except (leaderboard.BacktestUnavailable, FileNotFoundError) as exc:
        raise HTTPException(404, str(exc)) from None
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-cache"})


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
