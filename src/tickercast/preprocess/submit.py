"""The ``spark-submit`` entry: ``spark-submit src/tickercast/preprocess/submit.py --data DIR``.

``spark-submit`` runs this file as a script (``__main__``), not as a module of the package; it
defines nothing that Spark ships to executors, so everything the job runs is imported from
``tickercast`` by its package name.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickercast-preprocess",
        description="Raw CSVs under DIR/raw -> curated features under DIR/curated (a spark-submit target).",
    )
    parser.add_argument("--data", type=Path, help="Data root holding raw/ (default: settings' data_root)")
    parser.add_argument("--master", help="Spark master URL (default: spark-submit's, else settings)")
    parser.add_argument("--full", action="store_true", help="Recompute every row")
    parser.add_argument("--max-bad-fraction", type=float, help="Fail when more input rows than this are bad")
    parser.add_argument("--config", type=Path, help="YAML settings file")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the job from the command line and print its summary, then one JSON line.

    Args:
        argv: Arguments without the program name; default ``sys.argv[1:]``.

    Returns:
        The process exit code: 0 on success, the error's code after a one-line error message.

    """
    from tickercast.config import ConfigError, load_settings
    from tickercast.console import configure_logging, console
    from tickercast.errors import UserError
    from tickercast.preprocess.cli import print_summary, quiet_pyspark_warnings
    from tickercast.preprocess.job import run_job

    quiet_pyspark_warnings()
    args = _parser().parse_args(argv)
    configure_logging("INFO")
    overrides = {"data_root": args.data, "spark": {"max_bad_fraction": args.max_bad_fraction}}
    try:
        settings = load_settings(args.config, overrides)
        result = run_job(settings, full=args.full, master=args.master)
    except (UserError, ConfigError) as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return getattr(exc, "exit_code", 2)
    print_summary(result)
    print(json.dumps({"data_version": result.manifest.data_version, "rows": result.counts["written"]}))
    return 0


if __name__ == "__main__":  # pragma: no cover, exercised through spark-submit in the cluster test
    sys.exit(main())
