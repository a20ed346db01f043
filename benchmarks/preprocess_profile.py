"""Profile one preprocessing run: task and CPU time per Spark stage and wall time per query.

Runs ``run_job(full=True)`` on existing data with Spark's UI on, then reads Spark's REST API and
prints the stages that cost the most task time (with rows in and shuffled) and every SQL
query's duration. This is where the "where the time goes" table in ``docs/benchmarks.md`` comes
from. Generate data first, e.g. the benchmark's 10M set:

    .venv/bin/tickercast data synth --out /tmp/pp10m --tickers 4000 --days 2500 --seed 7
    .venv/bin/python benchmarks/preprocess_profile.py /tmp/pp10m
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
import urllib.request
from pathlib import Path


def _get(url: str) -> list[dict]:
    with urllib.request.urlopen(url, timeout=30) as response:  # the driver's own UI on localhost
        return json.load(response)


def _epoch_s(stamp: str) -> float:
    """Seconds since the epoch of a Spark REST time such as ``2026-11-27T17:10:05.123GMT``."""
    parsed = dt.datetime.strptime(stamp.replace("GMT", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
    return parsed.timestamp()


def main() -> None:
    """Run the job once and print its costliest stages and its queries."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path, help="data root holding raw/ (its curated/ is replaced)")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="2g")
    parser.add_argument("--partitions", type=int, default=8, help="spark.sql.shuffle.partitions")
    parser.add_argument("--top", type=int, default=14, help="how many stages to show")
    args = parser.parse_args()

    from tickercast.config import load_settings
    from tickercast.preprocess.job import run_job
    from tickercast.preprocess.session import get_session

    spark_settings = {
        "master": args.master,
        "driver_memory": args.driver_memory,
        "shuffle_partitions": args.partitions,
    }
    settings = load_settings(None, {"data_root": args.data, "spark": spark_settings})
    spark, _ = get_session(settings.spark, extra_conf={"spark.ui.enabled": "true"})
    try:
        run_started = time.time()
        started = time.perf_counter()
        result = run_job(settings, full=True)
        wall = time.perf_counter() - started
        read = result.counts["read"]
        print(f"wall {wall:.1f} s, {read:,} input rows, {read / wall:,.0f} rows/s")
        base = f"{spark.sparkContext.uiWebUrl}/api/v1/applications/{spark.sparkContext.applicationId}"
        stages = sorted(_get(f"{base}/stages"), key=lambda s: -s.get("executorRunTime", 0))
        run_s = sum(s.get("executorRunTime", 0) for s in stages) / 1000
        cpu_s = sum(s.get("executorCpuTime", 0) for s in stages) / 1e9
        # Task time counts a task from start to end, waits on its Python worker included; JVM CPU
        # time leaves those waits (and the Python workers' own CPU) out.
        gc_s = sum(s.get("jvmGcTime", 0) for s in stages) / 1000
        print(f"over all stages: {run_s:.1f} task s, {cpu_s:.1f} JVM CPU s, {gc_s:.1f} s in GC")
        print("stage  task s  JVM CPU s  GC s  tasks   rows in  shuffle rows in  shuffle MiB out")
        for stage in stages[: args.top]:
            print(
                f"{stage['stageId']:5d} {stage['executorRunTime'] / 1000:7.1f}"
                f" {stage.get('executorCpuTime', 0) / 1e9:10.1f} {stage.get('jvmGcTime', 0) / 1000:5.1f}"
                f" {stage['numTasks']:6d}"
                f" {stage.get('inputRecords', 0):9,d} {stage.get('shuffleReadRecords', 0):16,d}"
                f" {stage.get('shuffleWriteBytes', 0) / 2**20:16.0f}"
            )
        # Time outside any query is the driver's: listing files, planning, the manifest, publishing.
        print("query  starts at s  wall s  description")
        for query in _get(f"{base}/sql?details=false&length=1000"):
            start = _epoch_s(query["submissionTime"]) - run_started
            print(
                f"{query['id']:5d} {start:12.1f} {query['duration'] / 1000:7.1f}  {query['description'][:60]}"
            )
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
