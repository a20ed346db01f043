"""`tickercast serve` for real: uvicorn with two worker processes on 127.0.0.1, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.factories import PYTHON, REPO, tickercast_env
from tests.serve.conftest import Trained, free_port, wait_until


def serve_command(*args: str) -> list[str]:
    return [PYTHON, "-m", "tickercast", "serve", *args]


@pytest.fixture
def server(trained: Trained) -> Iterator[tuple[subprocess.Popen, str]]:
    """Two workers serving the registry champion of the trained data root; killed if a test leaves it."""
    port = free_port()
    process = subprocess.Popen(
        serve_command("--data", str(trained.root), "--workers", "2", "--port", str(port)),
        cwd=REPO,
        env=tickercast_env(trained.root),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        if process.stdout:
            process.stdout.close()


def _ready(base: str, probes: int = 12) -> bool:
    """Tell whether every worker is ready: each worker loads its own model, and a fresh connection
    may land on either, so one 200 is not enough; ``probes`` in a row on new connections are."""
    try:
        return all(httpx.get(f"{base}/readyz", timeout=2).status_code == 200 for _ in range(probes))
    except httpx.TransportError:
        return False


@pytest.mark.slow
@pytest.mark.distributed
def test_two_workers_answer_and_sigterm_drains_then_exits(server, trained: Trained) -> None:
    process, base = server
    wait_until(
        lambda: _ready(base) or process.poll() is not None, timeout=180, interval=0.5, what="readiness"
    )
    assert process.poll() is None, process.stdout.read() if process.stdout else ""
    # Each worker loads the model itself: several connections must all be answered.
    tickers = httpx.get(f"{base}/tickers", timeout=5).json()["tickers"]
    for _ in range(6):
        with httpx.Client(timeout=5) as client:
            response = client.get(f"{base}/predict", params={"ticker": tickers[0]})
            assert response.status_code == 200
            assert response.json()["model_version"] == "1"
    assert "tickercast_http_requests_total" in httpx.get(f"{base}/metrics", timeout=5).text

    # A request still being computed when SIGTERM arrives is finished, then the server exits cleanly.
    prices = trained.raw_prices(tickers[0]).tail(260)
    rows = prices[["Date", "Open", "High", "Low", "Close", "Volume"]].to_dict("records")
    answers: list[int] = []
    connected = threading.Event()

    def slow_request() -> None:
        # One keep-alive connection, already accepted by a worker before the signal arrives.
        with httpx.Client(base_url=base, timeout=30) as client:
            client.get("/healthz")
            connected.set()
            answers.append(client.post("/forecast", json={"ticker": tickers[0], "history": rows}).status_code)

    thread = threading.Thread(target=slow_request)
    thread.start()
    assert connected.wait(timeout=30)
    time.sleep(0.03)
    process.send_signal(signal.SIGTERM)
    thread.join(timeout=60)
    assert answers == [200]
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "Traceback" not in output
    assert output.count("Started server process") == 2, output
    assert output.count("Finished server process") == 2, output
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base}/healthz", timeout=2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model-uri", "models:/x@champion", "--model-dir", "somewhere"], "not both"),
        (["--model-dir", "no-such-folder"], "not a folder"),
        (["--data", "no-such-root"], "tickercast preprocess"),
    ],
)
def test_bad_arguments_are_one_line_errors(args: list[str], message: str, tmp_path: Path) -> None:
    result = subprocess.run(
        serve_command(*args),
        cwd=tmp_path,
        env=tickercast_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_serve_help_lists_its_options() -> None:
    result = subprocess.run(
        serve_command("--help"), cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    for option in ("--data", "--model-uri", "--model-dir", "--host", "--port", "--workers"):
        assert option in result.stdout
