"""Benchmark the Spark preprocessing job against the single-node pandas implementation.

For each size (price rows) it writes a synthetic market with news (``tickercast.data.synth``), then
runs, each in a fresh process so peak memory is its own:

* the Spark job (``run_job(full=True)``) on ``--master``; the clock starts once the session (the
  JVM) is up, and peak driver RSS is the Python driver plus its JVM (in local mode the JVM also
  hosts the executors);
* the pandas peer: read every raw CSV with pandas, concatenate in file-name order and call
  ``benchmarks/pandas_features.py``'s ``compute_features`` (what the original project did,
  without its ARIMA), timed after interpreter start.

It prints a markdown table (wall time, input rows/s, peak RSS, pandas/Spark ratios) and writes it
with the command and the machine to ``--report``.

    .venv/bin/python benchmarks/preprocess_bench.py --sizes 1000000 10000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

DAYS = 2500


def _peak_rss_kib(pid: int) -> int:
    """Peak resident set (VmHWM) of a process, in KiB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (for the JVM: PySpark's daemon and the Python workers it forked)."""
    found = []
    for child in _children(pid):
        found += [child, *_descendants(child)]
    return found


def _largest_worker_rss_mib(jvms: list[int]) -> float:
    """Peak resident set of the largest Python worker still alive under the JVMs, in MiB."""
    return max((_peak_rss_kib(p) for jvm in jvms for p in _descendants(jvm)), default=0) / 1024


def _start_spark(data: Path, master: str, driver_memory: str, partitions: int):
    """Build the job's settings and session; return them with the JVM's process ids."""
    from tickercast.config import load_settings
    from tickercast.preprocess.session import get_session

    settings = load_settings(
        None,
        {
            "data_root": data,
            "spark": {"master": master, "driver_memory": driver_memory, "shuffle_partitions": partitions},
        },
    )
    spark, _ = get_session(settings.spark, extra_conf={"spark.ui.enabled": "false"})
    return settings, spark, _children(os.getpid())


def run_spark(data: Path, master: str, driver_memory: str, partitions: int) -> dict:
    """Run the job once in this process and report time after session start and peak driver RSS."""
    from tickercast.preprocess.job import run_job

    settings, spark, jvms = _start_spark(data, master, driver_memory, partitions)
    started = time.perf_counter()
    result = run_job(settings, full=True)
    wall = time.perf_counter() - started
    rss = _peak_rss_kib(os.getpid()) + sum(_peak_rss_kib(p) for p in jvms)
    worker_rss = _largest_worker_rss_mib(jvms)  # read before the session stops them
    spark.stop()
    return {
        "wall_s": wall,
        "input_rows": result.counts["read"],
        "written": result.counts["written"],
        "peak_rss_mib": rss / 1024,
        "worker_rss_mib": worker_rss,
        "data_version": result.manifest.data_version,
    }


def run_scan(data: Path, master: str, driver_memory: str, partitions: int) -> dict:
    """Time Spark reading every raw CSV with the job's reader and nothing else: the job's floor."""
    from tickercast.preprocess import read

    _, spark, jvms = _start_spark(data, master, driver_memory, partitions)
    inputs = read.list_inputs(data)
    firsts = read.first_lines(spark, inputs)
    kinds = ("prices", "indices", "news", "sentiment")
    frames = [read.read_rows(spark, inputs, kind, firsts)[0] for kind in kinds]
    started = time.perf_counter()
    for frame in frames:  # every field parsed and materialised, then dropped
        frame.write.format("noop").mode("overwrite").save()
    wall = time.perf_counter() - started
    rows = sum(frame.count() for frame in frames)
    rss = _peak_rss_kib(os.getpid()) + sum(_peak_rss_kib(p) for p in jvms)
    spark.stop()
    return {"wall_s": wall, "input_rows": rows, "peak_rss_mib": rss / 1024}


def run_pandas(data: Path) -> dict:
    """Read the raw CSVs with pandas and compute the same features on one core."""

    from pandas_features import compute_features
    from tickercast.features.curate import read_raw

    started = time.perf_counter()

    prices, indices, news = (read_raw(data, kind) for kind in ("prices", "indices", "news"))
    rows = sum(len(f) for f in (prices, indices, news) if f is not None)
    out = compute_features(prices, indices, news)
    wall = time.perf_counter() - started
    return {
        "wall_s": wall,
        "input_rows": rows,
        "written": len(out),
        "peak_rss_mib": _peak_rss_kib(os.getpid()) / 1024,
    }


def _child(kind: str, data: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--data", str(data), "--master", args.master]
    command += ["--driver-memory", args.driver_memory, "--partitions", str(args.partitions)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {
            "error": done.stderr.strip().splitlines()[-1]
            if done.stderr.strip()
            else f"exit {done.returncode}"
        }
    return json.loads(done.stdout.strip().splitlines()[-1])


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000], help="price rows")
    parser.add_argument("--work", type=Path, default=Path("/tmp/tickercast-preprocess-bench"))
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="2g")
    parser.add_argument("--partitions", type=int, default=8, help="spark.sql.shuffle.partitions")
    parser.add_argument("--report", type=Path, default=Path("benchmarks/results/preprocess.md"))
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--child", choices=["spark", "scan", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "spark":
        print(json.dumps(run_spark(args.data, args.master, args.driver_memory, args.partitions)))
        return
    if args.child == "scan":
        print(json.dumps(run_scan(args.data, args.master, args.driver_memory, args.partitions)))
        return
    if args.child == "pandas":
        print(json.dumps(run_pandas(args.data)))
        return

    from tickercast.data.synth import generate_market

    rows = []
    for size in args.sizes:
        tickers = max(1, size // DAYS)
        data = args.work / f"rows-{size}"
        started = time.perf_counter()
        generate_market(data, tickers=tickers, days=DAYS, seed=7, force=True)
        took = time.perf_counter() - started
        print(f"# {size:,} price rows ({tickers} tickers x {DAYS} days): data in {took:.0f}s")
        shutil.rmtree(data / "curated", ignore_errors=True)
        shutil.rmtree(data / "quarantine", ignore_errors=True)
        load_before = _load()
        spark = _child("spark", data, args)
        print(f"  spark:  {spark}  (load {load_before})", flush=True)
        scan = _child("scan", data, args)
        print(f"  scan:   {scan}", flush=True)
        pandas = {"skipped": True} if args.skip_pandas else _child("pandas", data, args)
        print(f"  pandas: {pandas}  (load {_load()})", flush=True)
        rows.append((size, spark, scan, pandas, load_before))
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)

    table = _table(rows)
    print(table)
    _write_report(args, table)


def _fmt(result: dict, key: str, spec: str) -> str:
    return format(result[key], spec) if key in result else "-"


def _table(rows) -> str:
    lines = [
        "| price rows | input rows (all kinds) | engine | wall time (s) | input rows/s "
        "| peak driver RSS (MiB) | largest Python worker (MiB) | time / Spark job time "
        "| machine load (1/5/15 min) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for size, spark, scan, pandas, load in rows:
        engines = (("Spark job", spark), ("Spark CSV scan only", scan), ("pandas (1 core)", pandas))
        for name, result in engines:
            if "error" in result or "skipped" in result:
                note = result.get("error", "skipped")
                lines.append(f"| {size:,} | - | {name} | {note} | - | - | - | - | {load} |")
                continue
            rate = result["input_rows"] / result["wall_s"]
            ratio = ""
            if not name.startswith("Spark job") and "wall_s" in spark:
                ratio = f"{result['wall_s'] / spark['wall_s']:.2f}x"
            worker = _fmt(result, "worker_rss_mib", ",.0f")
            lines.append(
                f"| {size:,} | {result['input_rows']:,} | {name} | {result['wall_s']:.1f} | {rate:,.0f} | "
                f"{result['peak_rss_mib']:,.0f} | {worker} | {ratio} | {load} |"
            )
    return "\n".join(lines)


def _write_report(args: argparse.Namespace, table: str) -> None:
    cpu = os.cpu_count()
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    command = "python benchmarks/preprocess_bench.py --sizes " + " ".join(str(s) for s in args.sizes)
    text = f"""# Preprocessing benchmark: Spark job vs single-node pandas

Generated by `{command}` (master `{args.master}`, driver memory {args.driver_memory},
{args.partitions} shuffle partitions) on {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}.

Machine: {cpu} cores, {mem_gib:.0f} GiB RAM, {platform.system()} {platform.machine()}, Python
{platform.python_version()}; shared with other work while it ran, so timings are noisy (the load
column is the machine's load average when each Spark run started).

Synthetic market with news (`tickercast data synth`, {DAYS} trading days, about 0.8 headlines per
price row). "Input rows" counts every raw row the job reads (prices, indices and news). Spark time
starts after the session (JVM) is up and covers validation, quarantine, features, writing Parquet,
the content hash and the atomic publish. The pandas time covers reading the CSVs and computing the
same features (no validation beyond parsing, no output written). "Spark CSV scan only" reads every
raw file with the job's own reader and counts the rows, nothing more: the floor under the job on
this machine. Peak driver RSS for Spark is the
Python driver plus its JVM (which in local mode also runs the executors, with a fixed heap);
the Python workers (headline scoring, the feature kernel and the Parquet writer) are separate
processes: the largest one's peak is its own column.

{table}
"""
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(text)
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
