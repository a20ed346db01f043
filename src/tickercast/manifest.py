"""The curated dataset's manifest (``DIR/curated/manifest.json``): its typed model and its one reader.

The preprocessing job writes it last when it publishes; training, serving, the pipeline and the
job's own incremental mode read it through :func:`read_manifest` (or :func:`find_manifest` where a
missing or broken manifest only means "no usable previous dataset").
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tickercast.errors import UserError

log = logging.getLogger(__name__)


class ManifestError(UserError):
    """The manifest is missing, unreadable or not a curated manifest; the message says which."""


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class InputFileEntry(_Part):
    """One raw CSV the dataset was built from."""

    path: str = Field(description="Path relative to DIR/raw, e.g. prices/part-0001.csv.")
    kind: str = Field(description="Raw kind: prices, indices, news or sentiment.")
    size: int = Field(description="Size in bytes when read.")
    mtime_ns: int = Field(description="Modification time when read (ns since the epoch).")


class CalendarSpan(_Part):
    """The trading dates the dataset covers."""

    first_date: str | None = None
    last_date: str | None = None
    trading_dates: int = 0


class SymbolSpan(_Part):
    """One symbol's first and last curated date and its row count."""

    first_date: str
    last_date: str
    rows: int


class KindCounts(_Part):
    """Input rows of one raw kind by outcome."""

    read: int = 0
    valid: int = 0
    quarantined: int = 0
    bad: int = 0
    duplicates: int = 0
    superseded: int = 0


class Counts(KindCounts):
    """Input rows by outcome, and curated rows written."""

    written: int = 0


class CuratedManifest(_Part):
    """What one preprocessing run published: inputs, counts, calendar, symbols and the content hash."""

    schema_version: int = Field(description="Version of the curated column contract.")
    feature_spec: str = Field(description="Hash of the feature rules the rows were computed with.")
    run_id: str
    created_at: str = Field(description="ISO timestamp (UTC) of the run.")
    mode: str = Field(description="full or incremental.")
    data_version: str = Field(description="Content hash of the curated rows (order-free).")
    input_files: list[InputFileEntry] = Field(default_factory=list)
    counts: Counts = Field(default_factory=Counts)
    counts_by_kind: dict[str, KindCounts] = Field(default_factory=dict)
    quarantine_reasons: dict[str, int] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    columns: list[str] = Field(default_factory=list)
    index_symbols: list[str] = Field(default_factory=list)
    calendar: CalendarSpan = Field(default_factory=CalendarSpan)
    symbols: dict[str, SymbolSpan] = Field(default_factory=dict)
    max_bad_fraction: float | None = None

    def as_json(self) -> dict:
        """Return the manifest as the JSON object written to disk."""
        return self.model_dump(mode="json")


def read_manifest(path: Path) -> CuratedManifest:
    """Read and check a curated manifest.

    Args:
        path: ``DIR/curated/manifest.json`` (or the copy inside the features folder).

    Returns:
        The manifest.

    Raises:
        ManifestError: The file is missing, not UTF-8 JSON, or lacks a field the contract requires.

    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"no curated manifest at {path}; run `tickercast preprocess` first") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read the curated manifest {path}: {exc}") from None
    try:
        return CuratedManifest.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise ManifestError(
            f"{path} is not a valid curated manifest ({where}: {first['msg']}); "
            "rerun `tickercast preprocess --full`"
        ) from None


def find_manifest(path: Path) -> CuratedManifest | None:
    """Return the manifest at ``path``, or ``None`` when it is missing or broken (a broken one is logged)."""
    if not path.exists():
        return None
    try:
        return read_manifest(path)
    except ManifestError as exc:
        log.warning("%s", exc)
        return None
