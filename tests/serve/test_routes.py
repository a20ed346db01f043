"""Every endpoint and every error of the API, against an app serving a real (tiny) trained model."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tests.serve.conftest import Trained, assert_error, settings_for, wait_until
from tickercast import schema
from tickercast.model.bundle import ModelBundle
from tickercast.model.calibration import apply_calibration
from tickercast.serve.app import create_app

MAX_BATCH = 2
MAX_BODY = 200_000
MAX_ROWS = 300


@pytest.fixture(scope="module")
def client(trained: Trained) -> Iterator[TestClient]:
    settings = settings_for(
        trained.root,
        model_dir=trained.bundle,
        max_batch=MAX_BATCH,
        max_body_bytes=MAX_BODY,
        max_history_rows=MAX_ROWS,
    )
    app = create_app(settings)

    @app.get("/test-only/boom", include_in_schema=False)
    async def boom() -> None:
        raise RuntimeError("secret internal state /etc/passwd")

    with TestClient(app, raise_server_exceptions=False) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, what="readiness")
        yield client


@pytest.fixture(scope="module")
def tickers(trained: Trained) -> list[str]:
    return sorted(trained.curated["symbol"].unique())


def curated_rows(trained: Trained, ticker: str, rows: int) -> list[dict]:
    frame = trained.curated
    frame = frame[frame["symbol"] == ticker].tail(rows).drop(columns=["symbol"])
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def raw_rows(trained: Trained, ticker: str, rows: int) -> list[dict]:
    prices = trained.raw_prices(ticker).tail(rows)
    return prices[["Date", "Open", "High", "Low", "Close", "Volume"]].to_dict("records")


# --- /predict ------------------------------------------------------------------------------------


def test_predict_serves_the_models_forecast_with_its_context(
    client: TestClient, trained: Trained, tickers
) -> None:
    ticker = tickers[0]
    response = client.get("/predict", params={"ticker": ticker.lower()})
    assert response.status_code == 200
    body = response.json()

    # The numbers are the bundle's own forecast for the latest curated rows, computed independently here.
    bundle = ModelBundle.load(trained.bundle)
    assert bundle.calibration is not None
    expected = bundle.predict(trained.curated[trained.curated["symbol"] == ticker]).iloc[0]
    assert body["ticker"] == ticker
    # The model's own quantiles come back sorted (a quantile model may cross them).
    p10, p50, p90 = sorted(expected[["p10", "p50", "p90"]])
    assert body["raw_quantiles"] == pytest.approx({"p10": p10, "p50": p50, "p90": p90}, rel=1e-9)
    # The served ones are the calibrated median and band (no outcome has settled: nominal alpha).
    paths = bundle.predict_paths(trained.curated)  # batched as the service batches them
    calibrated = apply_calibration(paths[paths["symbol"] == ticker], bundle.calibration).iloc[0]
    served = {f"p{q}": calibrated["last_close"] * math.exp(calibrated[f"c_q{q}"]) for q in (10, 50, 90)}
    assert body["calibrated"] is True
    assert body["quantiles"] == pytest.approx(served, rel=1e-9)
    assert body["predicted_price"] == body["quantiles"]["p50"]
    p50 = body["predicted_price"]

    history = trained.curated[trained.curated["symbol"] == ticker]
    closes = history["close"].to_numpy()
    assert body["last_close"] == pytest.approx(closes[-1])
    assert body["change"] == pytest.approx((p50 / closes[-1] - 1) * 100)
    assert body["one_diff"] == pytest.approx((closes[-1] / closes[-2] - 1) * 100)
    assert body["three_diff"] == pytest.approx((closes[-1] / closes[-4] - 1) * 100)
    assert body["five_diff"] == pytest.approx((closes[-1] / closes[-6] - 1) * 100)
    assert body["sentiment"] == pytest.approx(history["sentiment"].iloc[-1])
    assert body["as_of"] == str(history["date"].iloc[-1]) == str(expected["as_of"])
    assert body["forecast_for"] == str(expected["forecast_for"]) and body["forecast_for"] > body["as_of"]
    assert body["image_url"] == f"/plot/{ticker}"
    assert body["model_version"] == trained.metadata["model_version"]
    assert body["data_version"] == trained.data_version


def test_predict_unknown_ticker_points_to_the_ticker_list(client: TestClient) -> None:
    assert_error(client.get("/predict", params={"ticker": "NOPE"}), 404, "'NOPE'", "/tickers")


@pytest.mark.parametrize("ticker", ["a/b", "", "X" * 16, "MS FT", "$$$", "../etc", "MSFT;rm", "é"])
def test_predict_malformed_ticker_is_422(client: TestClient, ticker: str) -> None:
    body = assert_error(client.get("/predict", params={"ticker": ticker}), 422, "ticker")
    assert body["errors"][0]["loc"] == ["query", "ticker"]


def test_predict_without_ticker_is_422(client: TestClient) -> None:
    assert_error(client.get("/predict"), 422, "ticker")


# --- /predict/batch ------------------------------------------------------------------------------


def test_batch_answers_in_the_order_asked_without_duplicates(client: TestClient, tickers) -> None:
    first, second = tickers[1], tickers[0]
    response = client.get("/predict/batch", params={"tickers": f"{first.lower()}, {second},{first}"})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert [p["ticker"] for p in predictions] == [first, second]
    single = client.get("/predict", params={"ticker": second}).json()
    assert predictions[1] == single


@pytest.mark.parametrize(
    ("query", "status", "fragment"),
    [
        ("A,B,C", 422, f"at most {MAX_BATCH}"),
        ("NOPE,ALSO", 404, "/tickers"),
        (",, ,", 422, "empty"),
        ("OK,bad/one", 422, "malformed"),
    ],
)
def test_batch_errors(client: TestClient, query: str, status: int, fragment: str) -> None:
    assert_error(client.get("/predict/batch", params={"tickers": query}), status, fragment)


# --- POST /forecast ------------------------------------------------------------------------------


def test_forecast_from_curated_rows_matches_the_precomputed_forecast(client, trained, tickers) -> None:
    ticker = tickers[0]
    response = client.post("/forecast", json={"ticker": ticker, "history": curated_rows(trained, ticker, 60)})
    assert response.status_code == 200, response.text
    body = response.json()
    served = client.get("/predict", params={"ticker": ticker}).json()
    assert body["input_kind"] == "curated"
    # The network computes in float32: alone or batched with other tickers, the last bits differ.
    assert body["predicted_price"] == pytest.approx(served["predicted_price"], rel=1e-8)
    assert body["quantiles"] == pytest.approx(served["quantiles"], rel=1e-8)
    assert body["raw_quantiles"] == pytest.approx(served["raw_quantiles"], rel=1e-8)
    assert [p["horizon"] for p in body["path"]] == [p["horizon"] for p in served["path"]]
    for mine, theirs in zip(body["path"], served["path"], strict=True):
        assert mine["forecast_for"] == theirs["forecast_for"]
        assert mine["band"] == pytest.approx(theirs["band"], rel=1e-8)
    assert body["as_of"] == served["as_of"] and body["forecast_for"] == served["forecast_for"]


def test_raw_history_of_a_served_ticker_gives_its_served_features_and_forecast(
    client, trained, tickers
) -> None:
    from tickercast.serve.history import raw_to_curated

    ticker = tickers[0]
    rows = raw_rows(trained, ticker, MAX_ROWS)
    served = trained.curated[trained.curated["symbol"] == ticker].reset_index(drop=True)
    # The features of the raw prices, computed as the service computes them: every row past the
    # 200-row look-back has the served values.
    computed = raw_to_curated(rows, ticker).reset_index(drop=True)
    exact = len(rows) - schema.MAX_LOOKBACK_ROWS
    computed, expected = computed.tail(exact), served.tail(exact)
    assert [str(d) for d in computed["date"]] == [str(d) for d in expected["date"]]
    keys = (schema.DATE, schema.SYMBOL, schema.TIME_IDX)
    from_prices = [
        c for c in schema.BASE_CURATED_COLUMNS if c not in (*keys, *schema.SENTIMENT_COLUMNS_CURATED)
    ]
    for column in from_prices:
        np.testing.assert_allclose(computed[column], expected[column], rtol=1e-9, err_msg=column)
    # time_idx counts the posted rows; the service places it on the served calendar instead.
    assert np.diff(computed["time_idx"]).tolist() == np.diff(expected["time_idx"]).tolist()
    # Prices carry neither news nor market indices: the service fills both in from its served
    # data by date (this ticker's news is real, so the fill is what makes the forecast the same).
    assert not set(computed.columns) & {*schema.SENTIMENT_COLUMNS_CURATED, "mkt_gspc_close"}
    assert expected["sentiment_observed"].sum() > 0 and expected["mkt_gspc_close"].notna().all()

    response = client.post("/forecast", json={"ticker": ticker.lower(), "history": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    predicted = client.get("/predict", params={"ticker": ticker}).json()
    assert body["input_kind"] == "raw"
    assert body["as_of"] == predicted["as_of"] and body["forecast_for"] == predicted["forecast_for"]
    assert body["quantiles"] == pytest.approx(predicted["quantiles"], rel=1e-8, abs=0)
    assert body["predicted_price"] == pytest.approx(predicted["predicted_price"], rel=1e-8, abs=0)


def test_forecast_from_raw_ohlcv_for_a_ticker_the_service_does_not_serve(client, trained, tickers) -> None:
    rows = raw_rows(trained, tickers[0], 260)
    response = client.post("/forecast", json={"ticker": "newco", "history": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ticker"] == "NEWCO" and body["input_kind"] == "raw"
    assert body["last_close"] == pytest.approx(rows[-1]["Close"])
    served = client.get("/predict", params={"ticker": tickers[0]}).json()
    assert body["as_of"] == rows[-1]["Date"][:10] == served["as_of"]
    assert body["forecast_for"] == served["forecast_for"]
    q = body["quantiles"]
    assert all(math.isfinite(v) for v in q.values()) and q["p10"] <= q["p50"] <= q["p90"]
    # Same prices as the served ticker, without its news: the forecast stays close to the served one.
    assert body["predicted_price"] == pytest.approx(served["predicted_price"], rel=0.02)


def test_forecast_with_too_little_raw_history_says_how_much_is_needed(client, trained, tickers) -> None:
    needed = trained.metadata["min_history_rows"] + 200 - 1
    response = client.post(
        "/forecast", json={"ticker": tickers[0], "history": raw_rows(trained, tickers[0], 100)}
    )
    assert_error(response, 422, "100 rows", f"at least {needed}")


def test_forecast_with_too_little_curated_history_says_how_much_is_needed(client, trained, tickers) -> None:
    needed = trained.metadata["min_history_rows"]
    response = client.post(
        "/forecast", json={"ticker": tickers[0], "history": curated_rows(trained, tickers[0], 5)}
    )
    assert_error(response, 422, f"last {needed} rows")


@pytest.mark.parametrize(
    ("history", "fragment"),
    [
        ([{"foo": 1}], "raw columns"),
        ([{"Date": "2024-01-02", "Close": 1.0, "date": "2024-01-02", "close": 1.0}], "mixes"),
        ([{"Date": "2024-01-02", "Open": 1, "High": 1, "Low": 1, "Close": "abc", "Volume": 1}], "Close"),
        ([{"Date": "yesterday", "Open": 1, "High": 1, "Low": 1, "Close": 1, "Volume": 1}], "date"),
        ([{"Date": "2024-01-02", "Open": 1, "High": 1, "Low": 2, "Close": 1, "Volume": 1}], "high < low"),
        ([{"Date": "2024-01-02", "Open": 1, "High": 1, "Low": 1, "Close": 1}], "Volume"),
        ([{"date": "2024-01-02", "close": "x"}], "wrong type"),
    ],
)
def test_forecast_rejects_unusable_rows_with_a_reason(client: TestClient, history, fragment: str) -> None:
    assert_error(client.post("/forecast", json={"ticker": "MSFT", "history": history}), 422, fragment)


def test_forecast_rejects_more_rows_than_the_limit(client: TestClient) -> None:
    rows = [{"Date": f"2024-01-{1 + i % 28:02d}", "Close": 1.0} for i in range(MAX_ROWS + 1)]
    assert_error(
        client.post("/forecast", json={"ticker": "MSFT", "history": rows}), 422, f"at most {MAX_ROWS}"
    )


def test_forecast_body_over_the_byte_limit_is_413(client: TestClient) -> None:
    body = json.dumps({"ticker": "MSFT", "history": [{"Date": "2024-01-02", "note": "x" * MAX_BODY}]})
    assert_error(client.post("/forecast", content=body, headers={"content-type": "application/json"}), 413)


def test_forecast_streamed_body_over_the_limit_is_413(client: TestClient) -> None:
    """Without a Content-Length the limit is enforced while the body arrives."""

    def chunks() -> Iterator[bytes]:
        yield b'{"ticker": "MSFT", "history": [{"Date": "'
        for _ in range(MAX_BODY // 10_000 + 1):
            yield b"x" * 10_000
        yield b'"}]}'

    response = client.post("/forecast", content=chunks(), headers={"content-type": "application/json"})
    assert_error(response, 413, str(MAX_BODY))


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b'{"ticker": "MSFT", "history": [', "not valid JSON"),
        (b'\xff\xfe{"ticker": 1}', "not valid JSON"),
        (b'{"history": []}', "ticker"),
        (b'{"ticker": "MS/FT", "history": [{"Date": "2024-01-02"}]}', "ticker"),
        (b'{"ticker": "MSFT", "history": []}', "history"),
        (b'{"ticker": "MSFT", "history": [{"Date": "2024-01-02"}], "extra": 1}', "extra"),
    ],
)
def test_forecast_malformed_body_is_422(client: TestClient, content: bytes, fragment: str) -> None:
    response = client.post("/forecast", content=content, headers={"content-type": "application/json"})
    assert_error(response, 422, fragment)


# --- /plot and /explain --------------------------------------------------------------------------


def test_plot_is_a_png_rendered_once_per_model_and_data(client: TestClient, tickers) -> None:
    first = client.get(f"/plot/{tickers[0].lower()}")
    assert first.status_code == 200
    assert first.headers["content-type"] == "image/png"
    assert first.content.startswith(b"\x89PNG\r\n\x1a\n") and len(first.content) > 5_000
    started = time.perf_counter()
    again = client.get(f"/plot/{tickers[0]}")
    assert time.perf_counter() - started < 0.5
    assert again.content == first.content
    assert client.get(f"/plot/{tickers[1]}").content != first.content


@pytest.mark.parametrize(
    "path",
    # (A literal "/plot/.." is normalised away by the client itself; the encoded forms reach the app.)
    [
        "/plot/..%2F..%2Fetc%2Fpasswd",
        "/plot/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/plot/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/plot/..%5C..%5Cwindows%5Cwin.ini",
        "/plot/%2e%2e",
        "/plot/%00",
        "/plot/etc%2Fpasswd",
        "/plot/" + "A" * 16,
        "/explain/..%2F..%2Fetc%2Fpasswd",
        "/explain/%2e%2e",
        "/history/..%2F..%2Fetc%2Fpasswd",
    ],
)
def test_paths_never_reach_the_file_system(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code in (404, 422), (path, response.status_code)
    assert response.headers["content-type"].startswith("application/json")
    assert "root:" not in response.text and "[fonts]" not in response.text
    assert "Traceback" not in response.text


def test_history_gives_the_closes_behind_the_forecast(client: TestClient, trained: Trained, tickers) -> None:
    ticker = tickers[0]
    body = client.get(f"/history/{ticker.lower()}").json()
    curated = trained.curated
    closes = curated[curated["symbol"] == ticker].sort_values("date")
    assert body["ticker"] == ticker
    dates = [point["date"] for point in body["points"]]
    assert dates == sorted(dates) and 60 <= len(dates) <= 130
    last = body["points"][-1]
    assert last["date"] == str(closes["date"].iloc[-1])[:10]
    assert last["close"] == pytest.approx(float(closes["close"].iloc[-1]))
    prediction = client.get(f"/predict?ticker={ticker}").json()
    assert prediction["as_of"] == last["date"] and prediction["last_close"] == pytest.approx(last["close"])
    assert_error(client.get("/history/NOPE"), 404, "/tickers")


def test_plot_unknown_ticker_is_404(client: TestClient) -> None:
    assert_error(client.get("/plot/NOPE"), 404, "/tickers")


def test_explain_gives_importances_and_attention(client: TestClient, trained: Trained, tickers) -> None:
    response = client.get(f"/explain/{tickers[0].lower()}")
    assert response.status_code == 200
    body = response.json()
    assert body["ticker"] == tickers[0]
    for key in ("encoder_importance", "decoder_importance", "static_importance"):
        assert sum(body[key].values()) == pytest.approx(1.0, abs=1e-6), key
    assert "log_return" in body["encoder_importance"]
    assert "symbol" in body["static_importance"]
    assert len(body["attention"]) == trained.metadata["max_encoder_length"]
    assert_error(client.get("/explain/NOPE"), 404, "/tickers")
    assert_error(client.get("/explain/a%20b"), 422)


# --- /tickers, /model, health, metrics -----------------------------------------------------------


def test_tickers_lists_every_served_symbol(client: TestClient, trained: Trained, tickers) -> None:
    body = client.get("/tickers").json()
    assert body["tickers"] == tickers and body["count"] == len(tickers)
    assert body["as_of"] == str(trained.curated["date"].max())


def test_model_describes_the_served_bundle(client: TestClient, trained: Trained) -> None:
    body = client.get("/model").json()
    meta = trained.metadata
    assert body["run_id"] == meta["run_id"]
    assert body["model_version"] == meta["model_version"]
    assert body["trained_at"] == meta["trained_at"]
    assert body["data_version"] == meta["data_version"]
    assert body["serving_data_version"] == trained.data_version
    assert body["test_metrics"]["mae"] == pytest.approx(meta["test_metrics"]["mae"])
    assert body["features"] == meta["features"]
    assert body["source"] == str(trained.bundle)


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_metrics_count_requests_by_route_template_and_status(
    client: TestClient, trained, tickers, metric
) -> None:
    before = client.get("/metrics").text
    ok_before = (
        metric(before, "tickercast_http_requests_total", route="/predict", method="GET", status="200") or 0
    )
    served_before = metric(before, "tickercast_forecasts_served_total", endpoint="predict") or 0
    for _ in range(3):
        client.get("/predict", params={"ticker": tickers[0]})
    client.get("/predict", params={"ticker": "NOPE"})
    client.get("/plot/..%2F..%2Fetc%2Fpasswd")
    text = client.get("/metrics").text
    assert (
        metric(text, "tickercast_http_requests_total", route="/predict", method="GET", status="200")
        == ok_before + 3
    )
    assert metric(text, "tickercast_http_requests_total", route="/predict", method="GET", status="404") >= 1
    assert (
        metric(text, "tickercast_http_requests_total", route="<unmatched>", method="GET", status="404") >= 1
    )
    assert metric(text, "tickercast_http_request_duration_seconds_count", route="/predict", status="200") >= 3
    assert metric(text, "tickercast_forecasts_served_total", endpoint="predict") == served_before + 3
    info = dict(model_version=trained.metadata["model_version"], data_version=trained.data_version)
    assert metric(text, "tickercast_model_info", run_id=trained.metadata["run_id"], **info) == 1
    age = metric(text, "tickercast_data_age_seconds")
    latest = pd.Timestamp(str(trained.curated["date"].max()), tz="UTC")
    assert age == pytest.approx((pd.Timestamp.now(tz="UTC") - latest).total_seconds(), abs=60)
    assert metric(text, "tickercast_model_reload_failures_total") == 0
    assert "etc/passwd" not in text


def test_unexpected_errors_are_500_without_internals(client: TestClient) -> None:
    response = client.get("/test-only/boom")
    body = assert_error(response, 500, "internal error")
    assert "secret" not in response.text and "passwd" not in response.text
    assert body == {"detail": "internal error; the server log has the details"}


def test_slow_requests_are_stopped_with_504(trained: Trained, tickers, running) -> None:
    settings = settings_for(trained.root, model_dir=trained.bundle, request_timeout_s=0.05)
    client = running(create_app(settings))
    rows = raw_rows(trained, tickers[0], 260)
    response = client.post("/forecast", json={"ticker": tickers[0], "history": rows})
    assert_error(response, 504, "longer than 0.05 s")
    assert client.get("/healthz").status_code == 200


def test_diffs_are_null_when_history_is_too_short_for_them() -> None:
    from tickercast.serve.predictor import make_forecast

    values = {"symbol": "X", "as_of": "2024-01-02", "forecast_for": "2024-01-03", "last_close": 10.0}
    row = pd.Series({**values, "p10": 9.0, "p50": 10.5, "p90": 11.0})
    history = pd.DataFrame({"close": [8.0, 10.0], "sentiment": [np.nan, np.nan]})
    forecast = make_forecast(row, history)
    crossed = make_forecast(pd.Series({**values, "p10": 10.6, "p50": 10.5, "p90": 10.2}), history)
    assert (crossed.p10, crossed.p50, crossed.p90) == (10.2, 10.5, 10.6)
    assert forecast.one_diff == pytest.approx(25.0)
    assert forecast.three_diff is None and forecast.five_diff is None
    assert forecast.sentiment is None
    assert forecast.change == pytest.approx(5.0)
