"""Throughput and latency of the prediction service against a bare FastAPI app, in one run.

Starts two real uvicorn servers on 127.0.0.1, one worker each, with the same uvicorn defaults:

- the service (`tickercast serve`) with a real trained model bundle, driven on ``GET /predict``;
- a bare FastAPI app whose one route returns a constant JSON (``bare_app`` below).

Both are driven by the same load generator: an asyncio client with one keep-alive HTTP/1.1
connection per concurrent user (raw streams, so the generator costs little CPU next to the
servers on a small machine), at concurrency 1, 16 and 64 for a fixed time each, in several
interleaved rounds (medians reported), with the server's CPU time per request read from ``/proc``.
``POST /forecast`` (computed on demand) is then timed with sequential requests.

    .venv/bin/python benchmarks/serve_bench.py                  # trains a model on synthetic data first
    .venv/bin/python benchmarks/serve_bench.py --data data      # serve DIR's registry champion
    .venv/bin/python benchmarks/serve_bench.py --duration 5 --rounds 1 --json /tmp/serve-bench.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from fastapi import FastAPI

from tickercast.processes import stop_group

REPO = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 16, 64)

bare_app = FastAPI()


@bare_app.get("/const")
async def const() -> dict[str, object]:
    return {"ticker": "MSFT", "predicted_price": 101.5, "change": 0.4}


# --- servers ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("TICKERCAST_") and k != "MLFLOW_TRACKING_URI"
    }
    env.update({"TICKERCAST_LOG_LEVEL": "WARNING", "MLFLOW_DISABLE_TELEMETRY": "true"})
    return env


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``): a figure other jobs cannot inflate."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server(command: list[str], port: int, ready_path: str, timeout: float = 300) -> Iterator[tuple[str, int]]:
    """Run a server until the block ends; yields its base URL and pid once it answers ``ready_path``."""
    import httpx

    process = subprocess.Popen(command, cwd=REPO, env=_env(), start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise SystemExit(f"server exited with {process.returncode}: {' '.join(command)}")
            try:
                if httpx.get(base + ready_path, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"server not ready after {timeout:.0f} s: {' '.join(command)}")
            time.sleep(0.5)
        yield base, process.pid
    finally:
        stop_group(process, ((signal.SIGTERM, 30.0), (signal.SIGKILL, None)))


# --- load generator --------------------------------------------------------------------------------


async def _user(
    port: int, request: bytes, stop_at: float, latencies: list[float], failures: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.write(request)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                failures.append(status)
    finally:
        writer.close()


async def _drive(port: int, path: str, concurrency: int, seconds: float) -> dict[str, float]:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    # Warm-up: connections opened, caches filled, nothing recorded.
    await asyncio.gather(
        *(_user(port, request, time.perf_counter() + 1.0, [], []) for _ in range(concurrency))
    )
    latencies: list[float] = []
    failures: list[int] = []
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(*(_user(port, request, stop_at, latencies, failures) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "failures": len(failures),
        "rps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def drive(port: int, pid: int, path: str, concurrency: int, seconds: float) -> dict[str, float]:
    """Send ``GET path`` from ``concurrency`` keep-alive connections for ``seconds``.

    Returns requests/s, latency percentiles and the server's CPU time per request (in µs).
    """
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    before = cpu_seconds(pid)
    figures = run(_drive(port, path, concurrency, seconds))
    # The 1 s warm-up's CPU is counted but not its requests: a slight overestimate, the same for both apps.
    figures["server_cpu_us"] = (cpu_seconds(pid) - before) / figures["requests"] * 1e6
    return figures


def time_forecasts(base: str, pid: int, body: dict, count: int) -> dict[str, float]:
    """Sequential ``POST /forecast`` calls after a warm-up: latency percentiles and server CPU, in ms."""
    import httpx

    with httpx.Client(base_url=base, timeout=60) as client:
        for _ in range(3):
            client.post("/forecast", json=body).raise_for_status()
        latencies = []
        before = cpu_seconds(pid)
        for _ in range(count):
            started = time.perf_counter()
            client.post("/forecast", json=body).raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
        cpu_ms = (cpu_seconds(pid) - before) / count * 1000
    return {
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "server_cpu_ms": cpu_ms,
    }


# --- data and model --------------------------------------------------------------------------------


def prepare_data(root: Path) -> None:
    """A synthetic market (6 tickers, 520 days), curated, and a model with the default hyper-parameters."""
    sys.path.insert(0, str(REPO))
    from tests.factories import make_curated, run_train

    print(f"preparing a synthetic market and training a model in {root} ...", flush=True)
    make_curated(root, tickers=6, days=520)
    run_train(root, "--devices", "1", "--max-epochs", "1", timeout=1800)


def raw_history(root: Path, rows: int) -> tuple[str, list[dict]]:
    import pandas as pd

    frame = pd.concat(
        [pd.read_csv(f, dtype={"Date": str}) for f in sorted((root / "raw" / "prices").glob("*.csv"))]
    )
    ticker = sorted(frame["Symbol"].unique())[0]
    prices = (
        frame[frame["Symbol"] == ticker].drop_duplicates("Date", keep="last").sort_values("Date").tail(rows)
    )
    return ticker, prices[["Date", "Open", "High", "Low", "Close", "Volume"]].to_dict("records")


def curated_history(root: Path, ticker: str, rows: int) -> list[dict]:
    import pandas as pd

    frame = pd.read_parquet(root / "curated" / "features")
    frame = frame[frame["symbol"] == ticker].sort_values("date").tail(rows).drop(columns=["symbol"])
    return json.loads(frame.to_json(orient="records", date_format="iso"))


# --- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="data root with curated data and a champion")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per point")
    parser.add_argument("--rounds", type=int, default=3, help="measure every point this many times")
    parser.add_argument("--forecasts", type=int, default=40, help="timed POST /forecast calls")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    root = args.data
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="serve-bench-"))
        prepare_data(root)
    ticker, raw = raw_history(root, 260)

    service_port, bare_port = free_port(), free_port()
    service_cmd = [
        sys.executable, "-m", "tickercast", "--log-level", "WARNING",
        "serve", "--data", str(root), "--port", str(service_port),
    ]  # fmt: skip
    bare_cmd = [
        sys.executable, "-m", "uvicorn", "serve_bench:bare_app", "--app-dir", str(REPO / "benchmarks"),
        "--host", "127.0.0.1", "--port", str(bare_port), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    results: dict[str, object] = {
        "machine": f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}",
        "load_average_before": os.getloadavg(),
        "duration_s": args.duration,
        "points": [],
    }
    with (
        server(service_cmd, service_port, "/readyz") as (service, pid),
        server(bare_cmd, bare_port, "/const") as (_, bare_pid),
    ):
        # Rounds interleave the two apps at every concurrency, so a burst of load from other jobs on a
        # shared machine hits both; the table reports the median round of each point.
        for round_ in range(args.rounds):
            for concurrency in CONCURRENCY:
                bare = drive(bare_port, bare_pid, "/const", concurrency, args.duration)
                predict = drive(service_port, pid, f"/predict?ticker={ticker}", concurrency, args.duration)
                point = {
                    "round": round_,
                    "concurrency": concurrency,
                    "bare": bare,
                    "predict": predict,
                    "ratio": predict["rps"] / bare["rps"],
                }
                results["points"].append(point)  # type: ignore[union-attr]
                print(json.dumps(point), flush=True)
        results["forecast_raw_260_rows"] = time_forecasts(
            service, pid, {"ticker": ticker, "history": raw}, args.forecasts
        )
        curated = curated_history(root, ticker, 60)
        results["forecast_curated_60_rows"] = time_forecasts(
            service, pid, {"ticker": ticker, "history": curated}, args.forecasts
        )
    results["load_average_after"] = os.getloadavg()

    print()
    print(
        "| concurrency | bare req/s | bare p50 / p99 ms | bare CPU µs/req "
        "| /predict req/s | /predict p50 / p99 ms | /predict CPU µs/req | ratio (range) |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for concurrency in CONCURRENCY:
        rounds = [p for p in results["points"] if p["concurrency"] == concurrency]  # type: ignore[union-attr]
        bare, predict = (
            {k: float(np.median([p[app][k] for p in rounds])) for k in rounds[0][app]}
            for app in ("bare", "predict")
        )
        ratios = sorted(p["ratio"] for p in rounds)
        print(
            f"| {concurrency} | {bare['rps']:,.0f} | {bare['p50_ms']:.1f} / {bare['p99_ms']:.1f} "
            f"| {bare['server_cpu_us']:.0f} | {predict['rps']:,.0f} "
            f"| {predict['p50_ms']:.1f} / {predict['p99_ms']:.1f} | {predict['server_cpu_us']:.0f} "
            f"| {np.median(ratios):.0%} ({ratios[0]:.0%}-{ratios[-1]:.0%}) |"
        )
    for key in ("forecast_raw_260_rows", "forecast_curated_60_rows"):
        figures: dict[str, float] = results[key]  # type: ignore[assignment]
        print(
            f"POST /forecast ({key}): p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
            f"server CPU {figures['server_cpu_ms']:.1f} ms per request"
        )
    print(f"load average before {results['load_average_before']}, after {results['load_average_after']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
