"""Run every stage in order and skip the ones whose inputs have not changed: ``tickercast pipeline run``.

data -> preprocess -> train -> evaluate -> serve. Each stage but ``serve`` runs as its own
``python -m tickercast <stage>`` process: training must (Lightning's DDP launcher re-executes the
command line for the other ranks), and the other stages gain from it too (the JVM and the torch
threads go away with the process, and the pipeline shows one tidy display while the full output
of every stage lands in ``DIR/.pipeline/logs/<stage>.log``).

What "unchanged" means is recorded in ``DIR/.pipeline/state.json`` after each stage succeeds, and
only then, so a failed stage leaves the record (and every earlier published output) as it was:

- **data** ran with the same source and options and its files are still there;
- **preprocess** saw the same raw files (sha256 of every ``raw/*/*.csv``) and the curated manifest
  still carries the ``data_version`` it published;
- **train** trained on the same ``data_version`` with the same settings and hyper-parameters, and
  that MLflow run still exists;
- **evaluate** reported on the same champion version and ``data_version``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from tickercast import schema
from tickercast.config import Settings
from tickercast.console import console, summary
from tickercast.errors import UserError
from tickercast.processes import stop_group

log = logging.getLogger(__name__)

STATE_DIR = ".pipeline"
STATE_FILE = "state.json"
STATE_VERSION = 1
STAGES = ("data", "preprocess", "train", "evaluate", "serve")

_HASH_CHUNK = 1 << 20
_KEPT_LINES = 500  # of a stage's output, in memory, to find its error line


class Source(StrEnum):
    """Where the raw data comes from."""

    sample = "sample"
    synth = "synth"


class StageFailed(UserError):
    """A stage exited with an error; the message is that error on one line."""

    exit_code = 1


# --- The state file ----------------------------------------------------------------------------------


def state_path(data_root: Path) -> Path:
    """Return where the pipeline records what each stage last published."""
    return data_root / STATE_DIR / STATE_FILE


def load_state(data_root: Path) -> dict[str, Any]:
    """Read the pipeline state of a data root; an absent or unreadable file means "nothing done yet".

    Args:
        data_root: The data root (``--data``).

    Returns:
        The state mapping (empty when there is none or it cannot be trusted).

    """
    path = state_path(data_root)
    try:
        state = json.loads(path.read_text())
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
    path = state_path(data_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**state, "version": STATE_VERSION}, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


# --- Fingerprints -------------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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
        hashes[rel] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": _sha256_file(path)}
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
    """
    from tickercast.train.fit import resolve_params

    payload = {
        "model": resolve_params(settings).model_dump(mode="json"),
        "train": settings.train.model_dump(mode="json", exclude={"params_file", "devices"}),
        "devices": devices,
        "schema": schema.SCHEMA_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def read_manifest(settings: Settings) -> dict[str, Any] | None:
    """Return the published curated manifest, or ``None`` when there is none (or it is unreadable)."""
    try:
        manifest = json.loads(settings.manifest_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _manifest_count(manifest: dict[str, Any], *keys: str) -> int | None:
    counts = manifest.get("counts") or manifest.get("row_counts") or {}
    for key in keys:
        for holder in (counts, manifest):
            value = holder.get(key) if isinstance(holder, dict) else None
            if isinstance(value, int):
                return value
            if isinstance(value, dict) and isinstance(value.get("total"), int):
                return value["total"]
    return None


# --- Running a stage ----------------------------------------------------------------------------------


@dataclass
class StageRun:
    """What one stage did, for the closing summary."""

    name: str
    status: str = "waiting"
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Context:
    """Everything the stages share during one ``pipeline run``."""

    settings: Settings
    source: Source
    devices: int
    force: bool
    synth: dict[str, Any]
    cli_prefix: list[str]
    state: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def data_root(self) -> Path:
        """The data root of this run."""
        return self.settings.data_root

    def log_path(self, stage: str) -> Path:
        """Return the file that receives the full output of a stage's process."""
        folder = self.data_root / STATE_DIR / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{stage}.log"

    def commit(self, stage: str, record: dict[str, Any]) -> None:
        """Record a stage's published output, only after it succeeded."""
        self.state[stage] = {**record, "completed_at": datetime.now(UTC).isoformat(timespec="seconds")}
        save_state(self.data_root, self.state)


def run_cli(ctx: Context, stage: str, args: list[str], on_line: Callable[[str], None]) -> list[str]:
    """Run ``python -m tickercast <args>`` as a child process, logging its output to the stage's log.

    Args:
        ctx: The pipeline context (settings file and logging flags are passed on).
        stage: The stage name, for the log file and the error message.
        args: The sub-command and its options.
        on_line: Called with each line of output as it arrives (the progress display shows it).

    Returns:
        The last lines of output (the full output is in the stage's log file).

    Raises:
        StageFailed: The process exited non-zero; the message holds its error line.

    """
    command = [sys.executable, "-m", "tickercast", *ctx.cli_prefix, *args]
    env = {**os.environ, "COLUMNS": "160", "PYTHONUNBUFFERED": "1"}
    log_path = ctx.log_path(stage)
    lines: deque[str] = deque(maxlen=_KEPT_LINES)
    with log_path.open("w") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
            env=env,
            # Its own process group, so that stopping the stage also stops what it started
            # (Spark's JVM, the other DDP ranks).
            start_new_session=True,
        )
        try:
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                log.flush()
                stripped = line.rstrip()
                if stripped:
                    lines.append(stripped)
                    on_line(stripped)
            returncode = process.wait()
        except BaseException:  # Ctrl-C, or the display failed: stop the stage and all it started
            _stop_group(process)
            raise
        finally:
            _reap_group(process.pid)
    if returncode != 0:
        raise StageFailed(f"{stage} failed: {_error_line(list(lines), returncode)} (full log: {log_path})")
    return list(lines)


def _stop_group(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Interrupt a stage's process group as Ctrl-C would, then terminate what is left."""
    stop_group(process, ((signal.SIGINT, grace_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)))


def _reap_group(pgid: int) -> None:
    """Stop processes a finished stage left behind in its group (e.g. an orphaned JVM)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, 0)
        os.killpg(pgid, signal.SIGTERM)


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b")


def _error_line(lines: list[str], returncode: int) -> str:
    """Pick the line that says what went wrong.

    In order: the CLI's one-line ``error:`` message; else the exception line that ends a Python
    traceback (with the Java error that a Py4J exception line announces); else the last line that
    is not a stack frame.
    """
    for line in reversed(lines):
        text = line.strip()
        if text.lower().startswith("error:"):
            return text[len("error:") :].strip()
    for index in range(len(lines) - 1, -1, -1):
        if _EXCEPTION_LINE.match(lines[index]):
            text = lines[index].strip()
            follow = lines[index + 1].strip() if index + 1 < len(lines) else ""
            if follow.startswith(": "):
                text += " " + follow
            return text[:300]
    for line in reversed(lines):
        text = line.strip()
        if text and line == line.lstrip() and not text.startswith(("[", "│", "╰", "╭", "─", "File ")):
            return text[:300]
    return f"exit code {returncode}"


# --- The stages ---------------------------------------------------------------------------------------


def stage_data(ctx: Context, report: Callable[[str], None]) -> StageRun:
    """Write the raw data (the real sample or the simulator) unless this source already wrote it."""
    request: dict[str, Any] = {"source": ctx.source.value}
    if ctx.source is Source.synth:
        request.update(ctx.synth)
    previous = ctx.state.get("data") or {}
    if previous.get("request", request) != request:  # --force too: two sources never mix in one root
        raise UserError(
            f"{ctx.data_root} already holds raw data written by {_describe(previous.get('request'))}; "
            f"use another --data folder for {_describe(request)}"
        )
    present = all((ctx.data_root / rel).is_file() for rel in previous.get("files", []))
    if not ctx.force and previous.get("request") == request and previous.get("files") and present:
        return StageRun("data", "skipped", f"{len(previous['files'])} raw files from {_describe(request)}")
    if ctx.source is Source.sample:
        args = ["data", "sample", "--out", str(ctx.data_root)]
    else:
        args = ["data", "synth", "--out", str(ctx.data_root)]
        args += ["--tickers", str(ctx.synth["tickers"]), "--days", str(ctx.synth["days"])]
        args += ["--seed", str(ctx.synth["seed"])]
    if ctx.force:
        args.append("--force")  # regenerate files whose content was changed since
    before = {p.relative_to(ctx.data_root).as_posix() for p in raw_files(ctx.data_root)}
    run_cli(ctx, "data", args, report)
    after = [p.relative_to(ctx.data_root).as_posix() for p in raw_files(ctx.data_root)]
    if not after:
        raise StageFailed(f"data failed: no raw CSV files appeared under {ctx.data_root / schema.RAW_DIR}")
    ctx.commit("data", {"request": request, "files": after})
    new = len(set(after) - before)
    return StageRun("data", "ran", f"{len(after)} raw files ({new} new) from {_describe(request)}")


def _describe(request: dict[str, Any] | None) -> str:
    if not request:
        return "an unknown source"
    if request.get("source") == Source.synth.value:
        tickers, days, seed = request.get("tickers"), request.get("days"), request.get("seed")
        return f"synth ({tickers} tickers x {days} days, seed {seed})"
    return str(request.get("source"))


def stage_preprocess(ctx: Context, report: Callable[[str], None]) -> StageRun:
    """Run the Spark job unless the raw files are the ones behind the published curated dataset."""
    previous = ctx.state.get("preprocess") or {}
    report("hashing raw files")
    hashes = hash_raw_files(ctx.data_root, (ctx.state.get("raw_hashes") or {}))
    fingerprint = raw_fingerprint(hashes)
    manifest = read_manifest(ctx.settings)
    published = manifest.get("data_version") if manifest else None
    ctx.state["raw_hashes"] = hashes  # a cache only: safe to record even if the stage fails
    if (
        not ctx.force
        and previous.get("raw_fingerprint") == fingerprint
        and published
        and previous.get("data_version") == published
    ):
        ctx.results["manifest"] = manifest
        return StageRun("preprocess", "skipped", f"raw files unchanged; data_version {published[:12]}")
    args = ["preprocess", "--data", str(ctx.data_root)]
    if ctx.force:
        args.append("--full")
    run_cli(ctx, "preprocess", args, report)
    manifest = read_manifest(ctx.settings)
    if not manifest or not manifest.get("data_version"):
        raise StageFailed(
            f"preprocess failed: it exited cleanly but published no manifest at {ctx.settings.manifest_path}"
        )
    ctx.results["manifest"] = manifest
    ctx.commit(
        "preprocess",
        {"raw_fingerprint": fingerprint, "data_version": manifest["data_version"], "files": len(hashes)},
    )
    return StageRun("preprocess", "ran", _manifest_detail(manifest))


def _manifest_detail(manifest: dict[str, Any]) -> str:
    rows = _manifest_count(manifest, "written", "rows_written", "valid")
    bad = _manifest_count(manifest, "quarantined", "rows_quarantined")
    parts = [f"data_version {str(manifest.get('data_version'))[:12]}"]
    if rows is not None:
        parts.append(f"{rows:,} rows")
    if bad is not None:
        parts.append(f"{bad:,} quarantined")
    return ", ".join(parts)


def stage_train(ctx: Context, report: Callable[[str], None]) -> StageRun:
    """Train with DDP unless a model was already trained on this data with these settings."""
    data_version = ctx.results["manifest"]["data_version"]
    fingerprint = training_fingerprint(ctx.settings, ctx.devices)
    previous = ctx.state.get("train") or {}
    if (
        not ctx.force
        and previous.get("data_version") == data_version
        and previous.get("fingerprint") == fingerprint
        and _run_exists(ctx.settings, previous.get("run_id"))
    ):
        ctx.results["train"] = previous
        version = previous.get("model_version")
        return StageRun(
            "train", "skipped", f"model v{version} already trained on data_version {data_version[:12]}"
        )
    started_ms = int(time.time() * 1000)
    args = ["train", "--data", str(ctx.data_root), "--devices", str(ctx.devices)]
    run_cli(ctx, "train", args, report)
    record = _latest_training(ctx.settings, started_ms)
    record.update({"data_version": data_version, "fingerprint": fingerprint})
    ctx.results["train"] = record
    ctx.commit("train", record)
    promoted = "promoted to champion" if record.get("promoted") else "kept the old champion"
    return StageRun(
        "train", "ran", f"run {str(record['run_id'])[:8]}, model v{record.get('model_version')}, {promoted}"
    )


def stage_evaluate(ctx: Context, report: Callable[[str], None]) -> StageRun:
    """Evaluate the champion on the current test split unless that pair was already reported."""
    data_version = ctx.results["manifest"]["data_version"]
    champion = _champion(ctx.settings)
    if champion is None:
        raise StageFailed("evaluate failed: no model holds the champion alias; see the train log")
    version, run_id = champion
    previous = ctx.state.get("evaluate") or {}
    trained = ctx.results.get("train") or {}
    if (
        not ctx.force
        and previous.get("model_version") == version
        and previous.get("data_version") == data_version
    ):
        ctx.results["evaluate"] = previous
        return StageRun("evaluate", "skipped", f"champion v{version} already evaluated on this data")
    if trained.get("run_id") == run_id and trained.get("data_version") == data_version:
        # Training evaluates its model on the test split as its last step: nothing left to do.
        record = {"model_version": version, "run_id": run_id, "data_version": data_version}
        ctx.results["evaluate"] = record
        ctx.commit("evaluate", record)
        return StageRun("evaluate", "ran", f"champion v{version} evaluated at the end of training")
    run_cli(ctx, "evaluate", ["evaluate", "--data", str(ctx.data_root)], report)
    record = {"model_version": version, "run_id": run_id, "data_version": data_version}
    ctx.results["evaluate"] = record
    ctx.commit("evaluate", record)
    return StageRun("evaluate", "ran", f"champion v{version} evaluated on data_version {data_version[:12]}")


# --- MLflow look-ups (imported lazily: mlflow takes seconds to import) --------------------------------


def _client(settings: Settings):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=settings.tracking_uri)


def _run_exists(settings: Settings, run_id: str | None) -> bool:
    if not run_id:
        return False
    try:
        run = _client(settings).get_run(run_id)
    except Exception:  # a missing run and an unreadable store both mean "train again"
        return False
    return run.info.lifecycle_stage == "active" and run.info.status == "FINISHED"


def _latest_training(settings: Settings, started_ms: int) -> dict[str, Any]:
    """Find the training run that just finished (the newest top-level run started after ``started_ms``)."""
    from mlflow.entities import ViewType

    client = _client(settings)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    runs = client.search_runs(
        experiments,
        filter_string=f"attributes.start_time >= {started_ms} and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=50,
    )
    runs = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    if not runs:
        raise StageFailed("train failed: it exited cleanly but no finished MLflow run was recorded")
    run = runs[0]
    versions = client.search_model_versions(f"run_id = '{run.info.run_id}'")
    version = max((int(v.version) for v in versions), default=None)
    champion = _champion(settings)
    return {
        "run_id": run.info.run_id,
        "model_version": str(version) if version is not None else None,
        "promoted": champion is not None and version is not None and champion[0] == str(version),
    }


def _champion(settings: Settings) -> tuple[str, str] | None:
    """Return ``(version, run id)`` of the model behind the champion alias, or ``None``."""
    from mlflow.exceptions import MlflowException

    from tickercast.config import CHAMPION_ALIAS

    try:
        version = _client(settings).get_model_version_by_alias(settings.registered_model_name, CHAMPION_ALIAS)
    except MlflowException:
        return None
    return str(version.version), str(version.run_id)


def champion_metrics(settings: Settings, run_id: str) -> dict[str, float]:
    """Return the test metrics logged by a run (``test_*`` metric names, prefix removed; none if gone)."""
    from mlflow.exceptions import MlflowException

    try:
        run = _client(settings).get_run(run_id)
    except MlflowException:
        return {}
    return {
        k.removeprefix("test_").removeprefix("test/"): v
        for k, v in run.data.metrics.items()
        if k.startswith("test")
    }


# --- The command --------------------------------------------------------------------------------------


def _port_free(host: str, port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def _display(stages: list[str]) -> Iterator[Callable[[str, str, str], None]]:
    """Show one progress display across stages; yields ``update(stage, status, detail)``."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Column
    from rich.text import Text

    class _Spinner(SpinnerColumn):
        def render(self, task):  # a spinner only for the stage at work
            return super().render(task) if task.started else Text(" ")

    progress = Progress(
        _Spinner(finished_text=" "),
        TextColumn("[bold]{task.fields[stage]}", table_column=Column(no_wrap=True, min_width=10)),
        TimeElapsedColumn(table_column=Column(no_wrap=True, min_width=7)),
        TextColumn(
            "{task.fields[mark]} {task.fields[detail]}",
            markup=True,
            table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1),
        ),
        console=console,
        transient=False,
        expand=True,
    )
    tasks = {
        name: progress.add_task(
            name, total=1, start=False, stage=name, mark="[dim]·[/]", detail="[dim]waiting[/]"
        )
        for name in stages
    }

    def update(stage: str, status: str, detail: str) -> None:
        task = tasks[stage]
        if status == "running":
            progress.start_task(task)
            progress.update(task, mark="[cyan]»[/]", detail=_trim(detail))
            return
        marks = {
            "ran": "[green]✔[/]",
            "skipped": "[blue]↷ skipped[/]",
            "off": "[dim]–[/]",
            "failed": "[red]✘[/]",
        }
        progress.start_task(task)
        progress.update(task, completed=1, mark=marks.get(status, ""), detail=_trim(detail, 110))
        progress.stop_task(task)

    with progress:
        try:
            yield update
        except BaseException:
            for stage, task_id in tasks.items():
                if not progress.tasks[task_id].started:
                    update(stage, "off", "not run")
            raise


def _trim(text: str, width: int = 90) -> str:
    from rich.markup import escape

    text = " ".join(text.split())
    return escape(text if len(text) <= width else text[: width - 1] + "…")


def run_pipeline(ctx: Context, serve: bool) -> list[StageRun]:
    """Run data, preprocess, train and evaluate in order with one progress display.

    Args:
        ctx: The pipeline context.
        serve: Whether the serve stage follows (only shown here; the caller starts it).

    Returns:
        What each stage did.

    Raises:
        StageFailed: A stage failed; earlier stages' outputs and records are kept.

    """
    steps = [
        ("data", stage_data),
        ("preprocess", stage_preprocess),
        ("train", stage_train),
        ("evaluate", stage_evaluate),
    ]
    runs: list[StageRun] = []
    with _display(list(STAGES)) as update:
        for name, step in steps:
            update(name, "running", "starting")
            started = time.monotonic()
            try:
                outcome = step(ctx, lambda line, name=name: update(name, "running", line))
            except UserError:
                update(name, "failed", "failed (the error follows)")
                raise
            except KeyboardInterrupt:
                update(name, "failed", "interrupted; its processes were stopped")
                raise
            except Exception as exc:  # a bug or an unreadable store: still one line for the user
                update(name, "failed", "failed (the error follows)")
                log.debug("stage %s failed", name, exc_info=True)
                raise StageFailed(f"{name} failed: {type(exc).__name__}: {exc}") from exc
            outcome.seconds = time.monotonic() - started
            update(name, outcome.status, f"{outcome.detail} ({outcome.seconds:.0f}s)")
            runs.append(outcome)
        if serve:
            url = f"http://{ctx.settings.serve.host}:{ctx.settings.serve.port}"
            update("serve", "ran", f"starting the API at {url}")
        else:
            update("serve", "off", "not requested (--no-serve)")
    return runs


def _closing_summary(ctx: Context, runs: list[StageRun], serve: bool, seconds: float) -> None:
    manifest = ctx.results.get("manifest") or {}
    champion = _champion(ctx.settings)
    lines = []
    lines.append(f"curated   {_manifest_detail(manifest)}")
    if champion:
        version, run_id = champion
        metrics = champion_metrics(ctx.settings, run_id)
        lines.append(f"champion  {ctx.settings.registered_model_name} v{version} (run {run_id[:8]})")
        lines.append(f"test      {_metrics_line(metrics)}")
    if serve:
        lines.append(
            f"API       http://{ctx.settings.serve.host}:{ctx.settings.serve.port}  (Ctrl-C stops it)"
        )
    for line in lines:
        console.print(f"  {line}", highlight=False)
    ran = [r.name for r in runs if r.status == "ran"]
    skipped = [r.name for r in runs if r.status == "skipped"]
    summary(
        f"pipeline done in {seconds:.0f}s: ran {', '.join(ran) or 'nothing'}; "
        f"skipped {', '.join(skipped) or 'nothing'} (state: {state_path(ctx.data_root)})"
    )


def _metrics_line(metrics: dict[str, float]) -> str:
    mae = metrics.get("mae")
    naive = next((metrics[k] for k in ("naive_mae", "mae_naive") if k in metrics), None)
    if mae is None:
        return ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())) or "no test metrics logged"
    text = f"MAE {mae:.4f} vs naive {naive:.4f}" if naive is not None else f"MAE {mae:.4f}"
    if naive:
        text += f" ({(mae / naive - 1) * 100:+.1f}%)"
    oracle = metrics.get("oracle_mae")
    if oracle is not None:
        text += f", oracle {oracle:.4f}"
    coverage = metrics.get("coverage") or metrics.get("coverage_p10_p90")
    if coverage is not None:
        text += f", P10–P90 coverage {coverage:.0%}"
    return text


def register(app: typer.Typer) -> None:
    """Add the ``pipeline`` command group to the ``tickercast`` app."""
    pipeline_app = typer.Typer(
        help="Run every stage in order, skipping those whose inputs have not changed.", no_args_is_help=True
    )
    app.add_typer(pipeline_app, name="pipeline")

    @pipeline_app.command("run")
    def run(
        ctx: typer.Context,
        data: Annotated[
            Path, typer.Option("--data", help="Data root: raw/, curated/, MLflow store, reports.")
        ] = Path("data"),
        source: Annotated[
            Source, typer.Option(help="Raw data: the real offline sample, or the market simulator.")
        ] = Source.sample,
        devices: Annotated[
            int | None, typer.Option(min=1, help="DDP processes for training (default: train.devices, 2).")
        ] = None,
        serve: Annotated[
            bool, typer.Option("--serve/--no-serve", help="Serve the API in the foreground at the end.")
        ] = True,
        force: Annotated[
            bool, typer.Option(help="Rerun every stage, even those whose inputs are unchanged.")
        ] = False,
        host: Annotated[
            str | None, typer.Option(help="Interface the API binds (default: serve.host).")
        ] = None,
        port: Annotated[
            int | None, typer.Option(min=1, max=65535, help="API port (default: serve.port).")
        ] = None,
        tickers: Annotated[int, typer.Option(min=1, help="--source synth: number of simulated tickers.")] = 5,
        days: Annotated[
            int, typer.Option(min=1, help="--source synth: number of simulated trading days.")
        ] = 750,
        seed: Annotated[int, typer.Option(help="--source synth: simulator seed.")] = 7,
    ) -> None:
        """Run data, preprocess, train (DDP), evaluate and serve, skipping stages with unchanged inputs.

        A stage is skipped when its inputs are those of its last published output (raw file
        hashes -> curated data_version -> the model trained on it), as recorded in
        DIR/.pipeline/state.json; --force reruns them all. Each stage's full output goes to
        DIR/.pipeline/logs/<stage>.log. A failing stage stops the run and leaves everything
        published before it as it was. `make demo` is `pipeline run --data data --source sample --serve`.
        """
        from tickercast.config import settings_for

        started = time.monotonic()
        settings = settings_for(
            ctx, {"data_root": data, "train": {"devices": devices}, "serve": {"host": host, "port": port}}
        )
        if serve and not _port_free(settings.serve.host, settings.serve.port):
            raise UserError(
                f"port {settings.serve.port} on {settings.serve.host} is in use: stop what holds it, "
                "or pass --port or --no-serve"
            )
        try:
            settings.data_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the data root {settings.data_root}: {exc.strerror}") from None
        root_obj = ctx.find_root().obj or {}
        prefix = ["--config", str(root_obj["config_file"])] if root_obj.get("config_file") else []
        pipeline_ctx = Context(
            settings=settings,
            source=source,
            devices=settings.train.devices,
            force=force,
            synth={"tickers": tickers, "days": days, "seed": seed},
            cli_prefix=prefix,
            state=load_state(settings.data_root),
        )
        with _terminate_as_interrupt():
            runs = run_pipeline(pipeline_ctx, serve)
        _closing_summary(pipeline_ctx, runs, serve, time.monotonic() - started)
        if serve:
            _serve(pipeline_ctx)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while stages run, so the running stage's processes are stopped too."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve(ctx: Context) -> None:
    """Become ``tickercast serve`` for this data root: the API runs in the foreground until Ctrl-C.

    Replacing this process (rather than starting a child) keeps one process to stop and hands
    signals straight to uvicorn, which finishes in-flight requests on SIGTERM.
    """
    settings = ctx.settings
    command = [sys.executable, "-m", "tickercast", *ctx.cli_prefix, "serve", "--data", str(ctx.data_root)]
    command += ["--host", settings.serve.host, "--port", str(settings.serve.port)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)
