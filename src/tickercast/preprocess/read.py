"""Reading the raw CSVs: listing the files and one distributed read per raw kind.

The driver lists the files (no file is opened) and reads each file's first line on the executors;
Spark reads the rows. Everything the driver holds grows with the number of files, not rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tickercast import schema

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"


@dataclass(frozen=True)
class InputFile:
    """One raw CSV: where it is, its kind, and what identifies its content."""

    kind: str
    path: Path
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        """The file's name relative to the raw folder, e.g. ``prices/part-0001.csv``."""
        return f"{self.kind}/{self.path.name}"

    def as_manifest(self) -> dict[str, Any]:
        """Return the manifest entry for this file."""
        return {"path": self.name, "kind": self.kind, "size": self.size, "mtime_ns": self.mtime_ns}


def list_inputs(data_root: Path) -> list[InputFile]:
    """List every raw CSV under ``DIR/raw/<kind>/`` (a directory listing; no file is opened).

    Names starting with ``.`` or ``_`` are hidden files to Spark and Hadoop, which never read them:
    they are left out, with a warning, rather than reported as empty.

    Args:
        data_root: The data root.

    Returns:
        The files sorted by kind and name.

    """
    files = []
    for kind in schema.RAW_KINDS:
        folder = schema.raw_dir(data_root, kind)
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.csv")):
            if path.name.startswith((".", "_")):
                log.warning("ignored %s: Spark skips files whose names start with '.' or '_'", path)
            elif path.is_file():
                stat = path.stat()
                files.append(InputFile(kind, path.resolve(), stat.st_size, stat.st_mtime_ns))
    return files


def staging_dir(curated_dir: Path, run_id: str) -> Path:
    """Return the staging folder of one run (under the curated folder, so renames stay on one disk)."""
    return curated_dir / f"{STAGING_PREFIX}{run_id}"


def files_of(inputs: list[InputFile], kind: str) -> list[InputFile]:
    """Return the raw files of one kind in name order: a file's position is its ``file_index``."""
    return sorted((f for f in inputs if f.kind == kind), key=lambda f: f.name)


def first_lines(spark: SparkSession, files: list[InputFile]) -> dict[str, list[str]]:
    """Read each raw file's first line on the executors (a few bytes per file, one job for all).

    Args:
        spark: The session.
        files: The raw files.

    Returns:
        Each file's path (as text) -> the fields of its first line.

    """
    from tickercast.preprocess import validate

    paths = [str(f.path) for f in files]
    if not paths:
        return {}
    slices = max(1, min(len(paths), 4 * spark.sparkContext.defaultParallelism))
    rdd = spark.sparkContext.parallelize(paths, slices)
    return dict(rdd.map(lambda p: (p, validate.first_lines(p))).collect())


def _reported_paths(frame: DataFrame) -> dict[str, str]:
    """Map each local path a file read covers to the path Spark reports for its rows.

    That is the qualified, URL-encoded URI (``file:///data/raw/prices/a%20b.csv``) that
    ``input_file_name()`` returns; Spark lists the same strings (one call), and decoding one gives
    the local path back.
    """
    from urllib.parse import unquote, urlparse

    return {unquote(urlparse(uri).path): uri for uri in frame.inputFiles()}


def read_rows(
    spark: SparkSession, files: list[InputFile], kind: str, firsts: dict[str, list[str]]
) -> tuple[DataFrame, DataFrame]:
    """Read every raw CSV of a kind in one distributed read, with each file's first line.

    Spark's CSV reader splits every record (RFC 4180: a quoted field may hold line breaks;
    whitespace trimmed, empty -> null) into as many string columns as the widest first line has
    (at most ``N_FIELDS``): a record that fits them exactly, as nearly all do, takes the reader's
    fast path; one with another number of fields is a malformed record to Spark and also gets its
    raw text in ``RAW_RECORD``, where validation looks for fields beyond the header. In
    ``multiLine`` mode one parser streams through each file (faster than one set up again for
    every line); each file is then read whole by one task, so the read is spread over files.
    :func:`tickercast.preprocess.validate.parse_rows` maps the columns by each file's header.
    Rows carry the path Spark reports for their file, not its name: the name comes from the small
    table of files, not from string work on millions of rows.

    Args:
        spark: The session.
        files: Every raw file (those of other kinds are left out).
        kind: The raw kind to read.
        firsts: Each file's path -> its first line's fields (:func:`first_lines`).

    Returns:
        ``(rows, files)``: ``_path, c0 .. c{n-1}`` and one row per file:
        ``_path, file_index, source_file, header_fields`` (``file_index`` numbers the kind's
        files in name order).

    """
    from pyspark.sql import functions as F

    from tickercast.preprocess.validate import CSV_OPTIONS, FILE_INDEX, N_FIELDS, RAW_RECORD, SOURCE_FILE

    files_ddl = f"_path STRING, {FILE_INDEX} INT, {SOURCE_FILE} STRING, header_fields ARRAY<STRING>"
    of_kind = files_of(files, kind)
    # At least two columns: a header is recognised by its first two fields.
    width = min(N_FIELDS, max([2, *(len(firsts[str(f.path)]) for f in of_kind)]))
    ddl = ", ".join([*(f"c{i} STRING" for i in range(width)), f"{RAW_RECORD} STRING"])
    if not of_kind:
        return spark.createDataFrame([], f"_path STRING, {ddl}"), spark.createDataFrame([], files_ddl)
    frame = (
        spark.read.schema(ddl)
        .options(header=False, multiLine=True, columnNameOfCorruptRecord=RAW_RECORD, **CSV_OPTIONS)
        .csv([str(f.path) for f in of_kind])
    )
    reported = _reported_paths(frame)
    # A file Spark would not list (none so far) keeps its local path: it then reads as empty.
    table = [
        (reported.get(str(f.path), str(f.path)), i, f.name, firsts[str(f.path)])
        for i, f in enumerate(of_kind)
    ]
    rows = frame.select(F.input_file_name().alias("_path"), *frame.columns)
    return rows, spark.createDataFrame(table, files_ddl)
