"""Time and peak memory of `tickercast data synth` at scale.

Runs the real command in a child process (so the figure includes interpreter start-up and every
write) and reads the child's peak resident set size from the kernel (``getrusage``).

    .venv/bin/python benchmarks/synth_bench.py                       # 5,000 tickers x 2,520 days
    .venv/bin/python benchmarks/synth_bench.py --tickers 500 --days 2520 --keep /tmp/synth
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _dir_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=5000)
    parser.add_argument("--days", type=int, default=2520)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, default=None, help="write here and keep the output")
    args = parser.parse_args(argv)

    out = args.keep or Path(tempfile.mkdtemp(prefix="synth-bench-"))
    command = [
        sys.executable, "-m", "tickercast", "data", "synth", "--out", str(out),
        "--tickers", str(args.tickers), "--days", str(args.days), "--seed", str(args.seed), "--force",
    ]  # fmt: skip
    started = time.perf_counter()
    completed = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall_s = time.perf_counter() - started
    if completed.returncode != 0:
        print(completed.stderr, file=sys.stderr)
        return completed.returncode
    peak_rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux reports KiB
    truth = json.loads((out / "synth_truth.json").read_text())
    raw = out / "raw"
    price_rows = args.tickers * args.days
    result = {
        "command": " ".join(["tickercast", *command[3:]]),
        "tickers": args.tickers,
        "days": args.days,
        "price_rows": price_rows,
        "headlines": truth["headlines"],
        "files": sum(1 for p in raw.rglob("*.csv")),
        "output_mib": round(_dir_size(out) / 2**20, 1),
        "wall_s": round(wall_s, 1),
        "price_rows_per_s": round(price_rows / wall_s),
        "peak_rss_mib": round(peak_rss_mib, 1),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(json.dumps(result, indent=2))
    if args.keep is None:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
