"""The curated manifest the job publishes: built from the run's counts and content, written, published.

The manifest (:class:`tickercast.manifest.CuratedManifest`) is written into the staging folder
twice: as ``manifest.json`` and as a copy inside the features folder (``_manifest.json``, ignored
by Parquet readers) so a reader can check that the two belong together. :func:`publish` swaps the
staged outputs into place, the manifest last.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tickercast import files, schema
from tickercast.features import rules
from tickercast.manifest import CuratedManifest

if TYPE_CHECKING:
    from pyspark.sql import Row

    from tickercast.config import Settings
    from tickercast.preprocess.quarantine import Summary
    from tickercast.preprocess.read import InputFile

FEATURES_MANIFEST_COPY = "_manifest.json"


def short_hash(parts: list[Any]) -> str:
    """Return the first 16 hex digits of the sha256 of JSON-serialisable parts."""
    return files.sha256_json(parts)[:16]


# Changing any rule that shapes the output changes this, so an incremental run never mixes rules.
FEATURE_SPEC = short_hash(
    [
        schema.SCHEMA_VERSION,
        list(schema.BASE_CURATED_COLUMNS),
        rules.MARKET_FFILL_LIMIT,
        rules.SENTIMENT_HALF_LIFE_DAYS,
        rules.SENTIMENT_MAX_CARRY_ROWS,
        schema.MARKET_CLOSE_HOUR,
    ]
)


@dataclass(frozen=True)
class Content:
    """What the written curated rows hold: their count, content hash, columns, calendar and symbols."""

    rows: int
    data_version: str
    columns: list[str]
    calendar: dict[str, Any]
    symbols: dict[str, dict[str, Any]]


def content_of(
    columns: list[str], metrics: dict[str, Any], trading_dates: list[dt.date], spans: list[Row]
) -> Content:
    """Hash the curated content and gather the calendar and per-symbol ranges.

    Args:
        columns: The curated columns as written.
        metrics: What :func:`tickercast.preprocess.write.write_curated` returned for them.
        trading_dates: The trading dates in order (a date's position is its ``time_idx``).
        spans: The rows of :func:`tickercast.preprocess.transforms.symbol_spans`, one per symbol:
            the curated rows hold one row per valid price row, so the same first and last
            indices and row counts (an incremental run writes the rows a full one would).

    Returns:
        The :class:`Content` of the written rows.

    """
    from tickercast.preprocess import write

    symbols = {
        r[schema.SYMBOL]: {
            "first_date": trading_dates[r["_first_idx"]].isoformat(),
            "last_date": trading_dates[r["_last_idx"]].isoformat(),
            "rows": r["_rows"],
        }
        for r in spans
    }
    typed = [[f.name, str(f.type)] for f in write.curated_schema(columns)]
    data_version = short_hash(
        [schema.SCHEMA_VERSION, typed, *(metrics[k] for k in ("rows", "xor", "sum_hi", "sum_lo"))]
    )
    calendar = {
        "first_date": metrics["first"].isoformat() if metrics["first"] else None,
        "last_date": metrics["last"].isoformat() if metrics["last"] else None,
        "trading_dates": len(trading_dates),
    }
    return Content(int(metrics["rows"]), data_version, list(columns), calendar, dict(sorted(symbols.items())))


def build_manifest(
    *,
    run_id: str,
    mode: str,
    inputs: list[InputFile],
    summary: Summary,
    content: Content,
    index_symbols: list[str],
    max_bad_fraction: float,
) -> CuratedManifest:
    """Describe one run's published dataset.

    Args:
        run_id: The run.
        mode: ``full`` or ``incremental``.
        inputs: The raw files read.
        summary: Input rows by outcome, reasons and warnings.
        content: The written rows.
        index_symbols: The index symbols, in order.
        max_bad_fraction: The bad-row limit the run was held to.

    Returns:
        The manifest, stamped with the current time.

    """
    return CuratedManifest.model_validate(
        {
            "schema_version": schema.SCHEMA_VERSION,
            "feature_spec": FEATURE_SPEC,
            "run_id": run_id,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "mode": mode,
            "data_version": content.data_version,
            "input_files": [f.as_manifest() for f in inputs],
            "counts": {**summary.counts, "written": content.rows},
            "counts_by_kind": summary.counts_by_kind,
            "quarantine_reasons": summary.reasons,
            "warnings": summary.warnings,
            "columns": content.columns,
            "index_symbols": index_symbols,
            "calendar": content.calendar,
            "symbols": content.symbols,
            "max_bad_fraction": max_bad_fraction,
        }
    )


def write_manifest(manifest: CuratedManifest, staging: Path) -> None:
    """Write the manifest into the staging folder and its copy into the staged features folder."""
    payload = manifest.as_json()
    files.write_json(staging / schema.MANIFEST_FILE, payload)
    files.write_json(staging / "features" / FEATURES_MANIFEST_COPY, payload)


def publish(staging: Path, settings: Settings) -> None:
    """Swap the staged quarantine, features and manifest into place (the manifest last).

    Args:
        staging: The run's staging folder (deleted afterwards, with the previous output in it).
        settings: Effective settings (the published paths).

    """
    files.publish(
        staging,
        {
            "quarantine": settings.quarantine_dir,
            "features": settings.features_dir,
            schema.MANIFEST_FILE: settings.manifest_path,
        },
    )
