"""What the pipeline remembers between runs (``DIR/.pipeline/state.json``) and the fingerprints it compares.

A stage's record is written only after the stage succeeded, so a failed stage leaves the record
(and every earlier published output) as it was.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tickercast import schema
from tickercast.files import sha256_file, sha256_json, write_json

if TYPE_CHECKING:
    from tickercast.config import Settings

STATE_DIR = ".pipeline"
STATE_FILE = "state.json"
STATE_VERSION = 1


def state_path(data_root: Path) -> Path:
    """Return where the pipeline records what each stage last published."""
    return data_root / STATE_DIR / STATE_FILE


def stage_log_path(data_root: Path, stage: str) -> Path:
    """Return the file that receives the full output of a stage's process (its folder is created)."""
    folder = data_root / STATE_DIR / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{stage}.log"


def load_state(data_root: Path) -> dict[str, Any]:
    """Read the pipeline state of a data root; an absent or unreadable file means "nothing done yet".

    Args:
        data_root: The data root (``--data``).

    Returns:
        The state mapping (empty when there is none or it cannot be trusted).

    """
    try:
        state = json.loads(state_path(data_root).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        return {}
    return state


def save_state(data_root: Path, state: dict[str, Any]) -> None:
    """Write the pipeline state atomically (a reader sees the old file or the new one, never half).

    Args:
        data_root: The data root (``--data``).
        state: The mapping to record.

    """
    write_json(state_path(data_root), {**state, "version": STATE_VERSION})


def raw_files(data_root: Path) -> list[Path]:
    """List the raw CSVs the preprocessing job reads, sorted (``raw/<kind>/*.csv`` for every kind)."""
    files: list[Path] = []
    for kind in schema.RAW_KINDS:
        folder = schema.raw_dir(data_root, kind)
        if folder.is_dir():
            files.extend(p for p in folder.glob("*.csv") if p.is_file())
    return sorted(files)


def hash_raw_files(data_root: Path, cache: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Hash every raw CSV, reusing a cached hash when a file's size and modification time are unchanged.

    The cache keeps a rerun on millions of rows quick: only new or touched files are read.

    Args:
        data_root: The data root.
        cache: ``{relative path: {"size", "mtime_ns", "sha256"}}`` from an earlier call.

    Returns:
        The same mapping for the files present now.

    """
    cache = cache or {}
    hashes: dict[str, dict[str, Any]] = {}
    for path in raw_files(data_root):
        rel = path.relative_to(data_root).as_posix()
        stat = path.stat()
        known = cache.get(rel)
        if known and known.get("size") == stat.st_size and known.get("mtime_ns") == stat.st_mtime_ns:
            hashes[rel] = known
            continue
        hashes[rel] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256_file(path)}
    return hashes


def raw_fingerprint(hashes: dict[str, dict[str, Any]]) -> str:
    """Return one hash over the names and contents of the raw files (and the schema version)."""
    digest = hashlib.sha256(f"schema={schema.SCHEMA_VERSION}\n".encode())
    for rel in sorted(hashes):
        digest.update(f"{rel}\0{hashes[rel]['sha256']}\n".encode())
    return digest.hexdigest()


def training_fingerprint(settings: Settings, devices: int) -> str:
    """Return one hash over everything besides the data that shapes a trained model.

    That is the effective hyper-parameters (settings overlaid by the ``--params`` YAML file, as
    training resolves them), the other training settings, and the number of processes (it changes
    the effective batch size).

    Args:
        settings: The run's settings.
        devices: The number of DDP processes training runs with.

    Returns:
        The hex sha256.

    """
    from tickercast.train.fit import resolve_params  # lazily: torch and Lightning take seconds

    return sha256_json(
        {
            "model": resolve_params(settings).model_dump(mode="json"),
            "train": settings.train.model_dump(mode="json", exclude={"params_file", "devices"}),
            "devices": devices,
            "schema": schema.SCHEMA_VERSION,
        }
    )
