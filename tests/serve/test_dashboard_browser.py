"""The dashboard in a real browser: the real API with a real tiny model, driven in headless Chromium.

Setup installs Debian's ``chromium`` and ``chromium-driver`` when they are missing (as root) and
skips, saying why, only where that is impossible. The screenshot lands in the test's temp folder;
set ``DASHBOARD_SCREENSHOT=path.png`` to keep a copy (that is how
``docs/img/dashboard.png`` is made).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.factories import REPO, make_curated, tickercast_env, train_tiny_model
from tests.serve.test_backtest_panel import write_backtest
from tests.serve.webdriver import Browser, ensure_browser, free_port, headless_chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOT_ENV = "DASHBOARD_SCREENSHOT"


@pytest.fixture(scope="module")
def browser_ready() -> None:
    try:
        ensure_browser()
    except RuntimeError as exc:
        pytest.skip(f"NO BROWSER TEST: {exc}")


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory, browser_ready: None) -> Iterator[str]:
    """The real service (uvicorn subprocess) serving a tiny model trained on synthetic data."""
    root = tmp_path_factory.mktemp("dashboard-data")
    make_curated(root, tickers=4, days=460)
    bundle = train_tiny_model(root, max_epochs=1)
    write_backtest(root)
    port = free_port()
    env = tickercast_env(root)
    env.update(
        {
            "TICKERCAST_DATA_ROOT": str(root),
            "TICKERCAST_SERVE__MODEL_DIR": str(bundle),
            "TICKERCAST_SERVE__RELOAD_INTERVAL_S": "0",
        }
    )
    log_path = root / "uvicorn.log"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "tickercast.serve.app:create_app_from_env",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log_path.open("w") as log:
        server = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, server, log_path)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_ready(url: str, server: subprocess.Popen, log_path: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the API exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"the API was not ready after {timeout:.0f}s:\n{log_path.read_text()[-3000:]}")


def _price(value: float) -> str:
    return f"{value:,.2f}"


def _pct(value: float | None) -> str:
    if value is None:
        return "–"
    sign = "+" if value > 0 else "−" if value < 0 else ""
    return f"{sign}{abs(value):.2f}%"


def _state(browser: Browser) -> str:
    return browser.execute("return document.body.dataset.state")


def test_dashboard_shows_the_forecast_chart_and_model_card(api_url: str, tmp_path: Path) -> None:
    api = httpx.Client(base_url=api_url, timeout=30)
    tickers = api.get("/tickers").json()["tickers"]
    model = api.get("/model").json()
    assert len(tickers) >= 2, tickers
    chosen = tickers[-1]  # not the one the page opens with
    prediction = api.get("/predict", params={"ticker": chosen}).json()
    explanation = api.get(f"/explain/{chosen}").json()
    paths = api.get("/openapi.json").json()["paths"]

    with headless_chromium(tmp_path / "profile") as browser:
        browser.get(f"{api_url}/")
        browser.wait_for("return document.body.dataset.state === 'ready'", timeout=60)
        options = browser.execute("return [...document.querySelectorAll('#ticker option')].map(o => o.value)")
        assert options == tickers
        assert browser.execute("return document.body.dataset.ticker") == tickers[0]

        # Pick a ticker as a user does: open the list and click the option.
        browser.click("#ticker")
        browser.click(f"#ticker option[value='{chosen}']")
        browser.wait_for(
            f"return document.body.dataset.state === 'ready' && document.body.dataset.ticker === '{chosen}'",
            timeout=60,
        )

        # The numbers are the API's numbers.
        assert browser.text("#predicted-price") == _price(prediction["predicted_price"])
        quantiles = prediction["quantiles"]
        assert browser.text("#band") == f"{_price(quantiles['p10'])} – {_price(quantiles['p90'])}"
        assert browser.text("#forecast-for") == f"· {prediction['forecast_for']}"
        for days, key in ((1, "one_diff"), (3, "three_diff"), (5, "five_diff")):
            assert browser.text(f"#diff-{days}") == _pct(prediction[key]), key
        assert chosen in browser.text("#chart-title")

        # The chart: drawn from the history endpoint when the API has one, else the API's PNG.
        chart = browser.execute(
            "const el = document.getElementById('chart');"
            "const canvas = el.querySelector('canvas'); const img = el.querySelector('img');"
            "return {kind: el.dataset.kind, points: Number(el.dataset.points || 0),"
            " canvas: canvas ? [canvas.width, canvas.height] : null,"
            " img: img ? [img.naturalWidth, img.naturalHeight] : null};"
        )
        # The cone: one step per horizon of the path after the last close.
        path = prediction["path"]
        assert len(path) == model["horizon"] == 5
        cone = browser.execute("return Number(document.getElementById('chart').dataset.cone || 0)")
        assert cone == len(path)
        if "/history/{ticker}" in paths:
            legend = browser.text(".u-legend")
            assert "Forecast P50" in legend and "P10" in legend and "P90" in legend, legend
            assert chart["kind"] == "uplot", chart
            assert chart["canvas"][0] > 300 and chart["canvas"][1] > 200, chart
            history = api.get(f"/history/{chosen}").json()
            rows = (
                history
                if isinstance(history, list)
                else history.get("points") or history.get("history") or []
            )
            assert chart["points"] >= min(20, len(rows)), chart
        else:
            assert chart["kind"] == "image", chart
            assert chart["img"][0] > 300 and chart["img"][1] > 200, chart

        # The path as a small table: one row per horizon, the API's dates and prices.
        table = browser.execute(
            "return [...document.querySelectorAll('#path-table tbody tr')]"
            ".map(r => [...r.children].map(c => c.textContent))"
        )
        assert table == [
            [str(p["horizon"]), p["forecast_for"], _price(p["p10"]), _price(p["p50"]), _price(p["p90"])]
            for p in path
        ]

        # Importances behind this forecast, largest first.
        bars = browser.execute(
            "return [...document.querySelectorAll('#imp-encoder li .name')].map(e => e.title)"
        )
        encoder = explanation["encoder_importance"]
        assert bars[0] == max(encoder, key=encoder.get)
        assert len(bars) == min(8, len(encoder))

        # The model card.
        expected_version = f"v{model['model_version']}" if model["model_version"] else "local bundle"
        assert browser.text("#model-version") == expected_version
        assert browser.text("#data-version") == str(model["data_version"])[:12]
        assert browser.text("#test-mae") == _price(model["test_metrics"]["mae"])
        assert browser.text("#naive-mae") == _price(model["test_metrics"]["naive_mae"])
        assert browser.text("#trained-at") != "–"
        assert browser.text("#model-horizon") == "1–5 trading days"
        assert browser.text("#trained-through") == model["trained_through"]
        # The skill stated plainly, as /model states it, for the first and the last horizon.
        skills = [h["skill"] for h in model["horizons"]]
        summary = browser.text("#skill-summary").lower()
        assert skills[0].lower() in summary and skills[-1].lower() in summary, summary
        rows = browser.execute("return document.querySelectorAll('#skill-table tbody tr').length")
        assert rows == len(skills) == 5

        # The track record: the backtest's leaderboard at h = 1 and the largest horizon, champion marked.
        backtest = api.get("/backtest").json()
        browser.wait_for("return document.body.dataset.backtest === 'shown'", timeout=30)
        boards = browser.execute(
            "return [...document.querySelectorAll('#backtest-tables .backtest-horizon')].map(b => ({"
            " horizon: Number(b.dataset.horizon),"
            " models: [...b.querySelectorAll('tbody tr')].map(r => r.dataset.model),"
            " champion: [...b.querySelectorAll('tbody tr.champion')].map(r => r.dataset.model)}))"
        )
        ends = [backtest["horizons"][0], backtest["horizons"][-1]]
        assert boards == [
            {
                "horizon": board["horizon"],
                "models": [row["model"] for row in board["rows"]],
                "champion": [row["model"] for row in board["rows"] if row["champion"]],
            }
            for board in ends
        ]
        assert all(board["champion"] == [backtest["champion"]] for board in boards)
        links = browser.execute(
            "return [...document.querySelectorAll('#backtest-plots a')].map(a => a.getAttribute('href'))"
        )
        assert links == [plot["url"] for plot in backtest["plots"]]

        severe = [entry for entry in browser.logs() if entry.get("level") == "SEVERE"]
        assert not severe, severe

        height = browser.execute("return document.documentElement.scrollHeight")
        browser.set_window(1440, int(height) + 120)
        shot = browser.screenshot(tmp_path / "dashboard.png")
    assert shot.stat().st_size > 20_000
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copyfile(shot, os.environ[SCREENSHOT_ENV])
