"""File helpers every stage shares: sha256 digests, atomic JSON writes and atomic publishing.

A reader of a published path sees the previous content or the new one, never half of either: new
content is written beside its target and renamed over it. Folders are swapped with one
``renameat2(RENAME_EXCHANGE)`` call on Linux (the path never goes missing), two renames elsewhere.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(value: Any) -> str:
    """Return the hex sha256 of a JSON-serialisable value (keys sorted, so the order does not matter)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def json_text(value: Any) -> str:
    """Render JSON the way every tickercast file is written: indented, keys sorted, a final newline."""
    return json.dumps(value, indent=2, sort_keys=True, default=str) + "\n"


def write_json(path: Path, value: Any) -> None:
    """Write JSON atomically: a temporary sibling renamed over ``path``.

    Args:
        path: The file to (re)write; its folder is created if missing.
        value: A JSON-serialisable value (dates and paths become strings).

    """
    write_text(path, json_text(value))


def write_text(path: Path, text: str) -> None:
    """Write text atomically: a temporary sibling renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
        staging: The staging folder.
        targets: Staged entry name -> published path, applied in order (put the manifest last).

    """
    for name, target in targets.items():
        swap_into_place(staging / name, target)
    shutil.rmtree(staging, ignore_errors=True)
