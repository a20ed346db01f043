"""Storage for the preprocessing job: listing and reading raw files, staging and atomic publishing.

Readers of ``DIR/curated`` and ``DIR/quarantine`` see either the previous dataset or the new one:
the job writes everything under ``DIR/curated/.staging-<run_id>/`` and then swaps each published
path with its staged twin. On Linux the swap is one ``renameat2(RENAME_EXCHANGE)`` call per path,
so the path never goes missing; elsewhere it is two renames. The manifest is replaced last with
``os.replace``, and a copy sits inside the features folder (``_manifest.json``, ignored by Parquet
readers) so a reader can check that the two belong together.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tickercast import schema

log = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"
FEATURES_MANIFEST_COPY = "_manifest.json"


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


def read_manifest(path: Path) -> dict[str, Any] | None:
    """Return the published manifest, or ``None`` when there is none or it cannot be read."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON with sorted keys and a trailing newline."""
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def content_hash(parts: list[Any]) -> str:
    """Return a short sha256 of JSON-serialisable parts (used for ``data_version``)."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2; return False where the call is not available."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def swap_into_place(staged: Path, target: Path) -> None:
    """Move ``staged`` to ``target``; an existing target ends up at ``staged`` (to be deleted).

    Args:
        staged: The new content (file or folder).
        target: The published path.

    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        os.rename(staged, target)
        return
    if staged.is_file() and target.is_file():
        backup = staged.with_name(staged.name + ".old")
        shutil.copy2(target, backup)
        os.replace(staged, target)
        os.rename(backup, staged)
        return
    if _exchange(staged, target):
        return
    old = staged.with_name(staged.name + ".old")
    os.rename(target, old)
    os.rename(staged, target)
    os.rename(old, staged)


def publish(staging: Path, targets: dict[str, Path]) -> None:
    """Swap staged outputs into place, then delete the staging folder (now holding the old output).

    Args:
        staging: The run's staging folder.
        targets: Staged entry name -> published path, applied in order (manifest last).

    """
    for name, target in targets.items():
        swap_into_place(staging / name, target)
    shutil.rmtree(staging, ignore_errors=True)
