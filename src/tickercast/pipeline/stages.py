"""The stages as a table (name, fingerprint, command, what it records) and the one loop that runs it.

For each stage, :func:`run_stage` computes the fingerprint of its inputs; when the stage's last
record carries the same fingerprint and its output is still there, the stage is skipped.
Otherwise the stage's command runs as its own process and, once it succeeded, the fingerprint and
what the stage published are recorded in ``DIR/.pipeline/state.json``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tickercast import schema
from tickercast.errors import UserError
from tickercast.manifest import find_manifest
from tickercast.pipeline.display import backtest_detail, manifest_detail, progress_display
from tickercast.pipeline.runner import StageFailed, run_cli
from tickercast.pipeline.state import (
    hash_raw_files,
    raw_files,
    raw_fingerprint,
    save_state,
    stage_log_path,
    training_fingerprint,
)

if TYPE_CHECKING:
    from tickercast.config import Settings
    from tickercast.manifest import CuratedManifest

log = logging.getLogger(__name__)

Record = dict[str, Any]


class Source(StrEnum):
    """Where the raw data comes from."""

    sample = "sample"
    synth = "synth"


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
    # What each stage did in this run (its new record, or the previous one when skipped).
    results: dict[str, Record] = field(default_factory=dict)
    manifest: CuratedManifest | None = None
    champion: tuple[str, str] | None = None
    raw_before: set[str] = field(default_factory=set)

    @property
    def data_root(self) -> Path:
        """The data root of this run."""
        return self.settings.data_root

    @property
    def data_version(self) -> str:
        """The data_version of the curated dataset (set once the preprocess stage is done)."""
        assert self.manifest is not None, "the preprocess stage runs before the stages that need this"
        return self.manifest.data_version

    def commit(self, stage: str, record: Record) -> None:
        """Record a stage's published output, only after it succeeded."""
        self.state[stage] = {**record, "completed_at": datetime.now(UTC).isoformat(timespec="seconds")}
        save_state(self.data_root, self.state)


@dataclass(frozen=True)
class Stage:
    """One row of the pipeline table.

    Attributes:
        name: The stage, as shown and as keyed in the state file.
        fingerprint: The inputs of the stage's output; a skip needs the last record to hold them all.
        present: Whether the output behind the last record is still there.
        command: The ``tickercast`` sub-command and options that run the stage, or ``None`` when
            the output already exists and only needs recording.
        records: What the stage published, read once its command succeeded (given the time it
            started); recorded along with the fingerprint.
        skipped: The display line of a skipped stage, from its last record.
        ran: The display line of a stage that ran, from its new record.

    """

    name: str
    fingerprint: Callable[[Context, Callable[[str], None]], Record]
    present: Callable[[Context, Record], bool]
    command: Callable[[Context], list[str] | None]
    records: Callable[[Context, float], Record]
    skipped: Callable[[Context, Record], str]
    ran: Callable[[Context, Record], str]


# --- data: the raw CSVs ----------------------------------------------------------------------------


def _data_fingerprint(ctx: Context, report: Callable[[str], None]) -> Record:
    request: Record = {"source": ctx.source.value}
    if ctx.source is Source.synth:
        request.update(ctx.synth)
    previous = ctx.state.get("data") or {}
    if previous.get("request", request) != request:  # --force too: two sources never mix in one root
        raise UserError(
            f"{ctx.data_root} already holds raw data written by {_describe(previous.get('request'))}; "
            f"use another --data folder for {_describe(request)}"
        )
    ctx.raw_before = {p.relative_to(ctx.data_root).as_posix() for p in raw_files(ctx.data_root)}
    return {"request": request}


def _data_present(ctx: Context, previous: Record) -> bool:
    files = previous.get("files") or []
    return bool(files) and all((ctx.data_root / rel).is_file() for rel in files)


def _data_command(ctx: Context) -> list[str]:
    args = ["data", ctx.source.value, "--out", str(ctx.data_root)]
    if ctx.source is Source.synth:
        args += ["--tickers", str(ctx.synth["tickers"]), "--days", str(ctx.synth["days"])]
        args += ["--seed", str(ctx.synth["seed"])]
    if ctx.force:
        args.append("--force")  # regenerate files whose content was changed since
    return args


def _data_records(ctx: Context, started: float) -> Record:
    after = [p.relative_to(ctx.data_root).as_posix() for p in raw_files(ctx.data_root)]
    if not after:
        raise StageFailed(f"data failed: no raw CSV files appeared under {ctx.data_root / schema.RAW_DIR}")
    return {"files": after}


def _describe(request: Record | None) -> str:
    if not request:
        return "an unknown source"
    if request.get("source") == Source.synth.value:
        tickers, days, seed = request.get("tickers"), request.get("days"), request.get("seed")
        return f"synth ({tickers} tickers x {days} days, seed {seed})"
    return str(request.get("source"))


# --- preprocess: the curated dataset -----------------------------------------------------------------


def _preprocess_fingerprint(ctx: Context, report: Callable[[str], None]) -> Record:
    report("hashing raw files")
    hashes = hash_raw_files(ctx.data_root, ctx.state.get("raw_hashes") or {})
    ctx.state["raw_hashes"] = hashes  # a cache only: safe to record even if the stage fails
    ctx.manifest = find_manifest(ctx.settings.manifest_path)
    return {"raw_fingerprint": raw_fingerprint(hashes)}


def _preprocess_present(ctx: Context, previous: Record) -> bool:
    return ctx.manifest is not None and previous.get("data_version") == ctx.manifest.data_version


def _preprocess_command(ctx: Context) -> list[str]:
    return ["preprocess", "--data", str(ctx.data_root), *(["--full"] if ctx.force else [])]


def _preprocess_records(ctx: Context, started: float) -> Record:
    ctx.manifest = find_manifest(ctx.settings.manifest_path)
    if ctx.manifest is None:
        raise StageFailed(
            f"preprocess failed: it exited cleanly but published no manifest at {ctx.settings.manifest_path}"
        )
    return {"data_version": ctx.manifest.data_version, "files": len(ctx.state["raw_hashes"])}


# --- train: the model, registered in MLflow ----------------------------------------------------------


def _train_fingerprint(ctx: Context, report: Callable[[str], None]) -> Record:
    return {"data_version": ctx.data_version, "fingerprint": training_fingerprint(ctx.settings, ctx.devices)}


def _train_present(ctx: Context, previous: Record) -> bool:
    from tickercast.train.tracking import run_finished  # lazily: mlflow takes seconds to import

    return run_finished(ctx.settings, previous.get("run_id"))


def _train_records(ctx: Context, started: float) -> Record:
    from tickercast.train.tracking import latest_training

    record = latest_training(ctx.settings, int(started * 1000))
    if record is None:
        raise StageFailed("train failed: it exited cleanly but no finished MLflow run was recorded")
    return record


def _train_ran(ctx: Context, record: Record) -> str:
    promoted = "promoted to champion" if record.get("promoted") else "kept the old champion"
    return f"run {str(record['run_id'])[:8]}, model v{record.get('model_version')}, {promoted}"


# --- evaluate: the champion's report on the current test split ---------------------------------------


def _evaluate_fingerprint(ctx: Context, report: Callable[[str], None]) -> Record:
    from tickercast.train.tracking import champion_model

    ctx.champion = champion_model(ctx.settings)
    if ctx.champion is None:
        raise StageFailed("evaluate failed: no model holds the champion alias; see the train log")
    return {"model_version": ctx.champion[0], "data_version": ctx.data_version}


def _evaluate_command(ctx: Context) -> list[str] | None:
    assert ctx.champion is not None
    trained = ctx.results.get("train") or {}
    if trained.get("run_id") == ctx.champion[1] and trained.get("data_version") == ctx.data_version:
        return None  # training evaluates its model on the test split as its last step
    return ["evaluate", "--data", str(ctx.data_root)]


def _evaluate_records(ctx: Context, started: float) -> Record:
    assert ctx.champion is not None
    return {"run_id": ctx.champion[1]}


def _evaluate_ran(ctx: Context, record: Record) -> str:
    version = record["model_version"]
    if _evaluate_command(ctx) is None:
        return f"champion v{version} evaluated at the end of training"
    return f"champion v{version} evaluated on data_version {record['data_version'][:12]}"


# --- backtest: the champion walked forward against the baselines -------------------------------------

# Every baseline but AutoARIMA, whose order search is most of a backtest's time on the demo's data;
# the origins default to those that fit the champion's unseen window (the command's own default).
BACKTEST_MODELS = "tft,naive,drift,auto_ets,lightgbm"
BACKTEST_OPTIONS = ("--models", BACKTEST_MODELS)


def _backtest_fingerprint(ctx: Context, report: Callable[[str], None]) -> Record:
    if ctx.champion is None:
        from tickercast.train.tracking import champion_model

        ctx.champion = champion_model(ctx.settings)
    if ctx.champion is None:
        raise StageFailed("backtest failed: no model holds the champion alias; see the train log")
    return {
        "model_version": ctx.champion[0],
        "data_version": ctx.data_version,
        "options": " ".join(BACKTEST_OPTIONS),
    }


def _backtest_present(ctx: Context, previous: Record) -> bool:
    leaderboard = previous.get("leaderboard")
    return bool(leaderboard) and (ctx.data_root / str(leaderboard)).is_file()


def _backtest_records(ctx: Context, started: float) -> Record:
    """Record the leaderboard the run wrote and the tft rows at h = 1 and at the largest horizon."""
    import json

    runs = ctx.settings.reports_dir / "backtest"
    written = [p for p in runs.glob("*/leaderboard.json") if p.stat().st_mtime >= started - 1]
    if not written:
        raise StageFailed(f"backtest failed: it exited cleanly but wrote no leaderboard under {runs}")
    leaderboard = max(written, key=lambda p: p.parent.name)
    rows = json.loads(leaderboard.read_text())
    horizons = sorted({int(r["horizon"]) for r in rows})
    ends = sorted({horizons[0], horizons[-1]})
    naive = {int(r["horizon"]): r["scaled_crps"] for r in rows if r["model"] == "naive"}
    tft = [
        {
            "horizon": int(r["horizon"]),
            "scaled_crps": r["scaled_crps"],
            "mae_vs_naive": r["mae_vs_naive"],
            "rank": r["rank"],
            "naive_scaled_crps": naive.get(int(r["horizon"])),
        }
        for r in rows
        if r["model"] == "tft" and int(r["horizon"]) in ends
    ]
    return {"leaderboard": leaderboard.relative_to(ctx.data_root).as_posix(), "tft": tft}


def _backtest_skipped(ctx: Context, previous: Record) -> str:
    return f"champion v{previous['model_version']} already backtested on this data: " + backtest_detail(
        previous.get("tft") or []
    )


def _backtest_ran(ctx: Context, record: Record) -> str:
    return f"champion v{record['model_version']}: " + backtest_detail(record.get("tft") or [])


# --- The table and its runner ------------------------------------------------------------------------


PIPELINE: tuple[Stage, ...] = (
    Stage(
        name="data",
        fingerprint=_data_fingerprint,
        present=_data_present,
        command=_data_command,
        records=_data_records,
        skipped=lambda ctx, prev: f"{len(prev['files'])} raw files from {_describe(prev['request'])}",
        ran=lambda ctx, rec: (
            f"{len(rec['files'])} raw files ({len(set(rec['files']) - ctx.raw_before)} new) "
            f"from {_describe(rec['request'])}"
        ),
    ),
    Stage(
        name="preprocess",
        fingerprint=_preprocess_fingerprint,
        present=_preprocess_present,
        command=_preprocess_command,
        records=_preprocess_records,
        skipped=lambda ctx, prev: f"raw files unchanged; data_version {prev['data_version'][:12]}",
        ran=lambda ctx, rec: manifest_detail(ctx.manifest),
    ),
    Stage(
        name="train",
        fingerprint=_train_fingerprint,
        present=_train_present,
        command=lambda ctx: ["train", "--data", str(ctx.data_root), "--devices", str(ctx.devices)],
        records=_train_records,
        skipped=lambda ctx, prev: (
            f"model v{prev.get('model_version')} already trained on data_version {prev['data_version'][:12]}"
        ),
        ran=_train_ran,
    ),
    Stage(
        name="evaluate",
        fingerprint=_evaluate_fingerprint,
        present=lambda ctx, prev: True,
        command=_evaluate_command,
        records=_evaluate_records,
        skipped=lambda ctx, prev: f"champion v{prev['model_version']} already evaluated on this data",
        ran=_evaluate_ran,
    ),
    Stage(
        name="backtest",
        fingerprint=_backtest_fingerprint,
        present=_backtest_present,
        command=lambda ctx: ["backtest", "--data", str(ctx.data_root), *BACKTEST_OPTIONS],
        records=_backtest_records,
        skipped=_backtest_skipped,
        ran=_backtest_ran,
    ),
)
STAGES = (*(stage.name for stage in PIPELINE), "serve")


def run_stage(ctx: Context, stage: Stage, report: Callable[[str], None]) -> StageRun:
    """Skip a stage whose fingerprint and output match its last record; otherwise run and record it.

    Args:
        ctx: The pipeline context.
        stage: The table row.
        report: Called with each line of the stage's output.

    Returns:
        What the stage did.

    Raises:
        StageFailed: The stage failed; its last record is kept as it was.

    """
    previous = ctx.state.get(stage.name) or {}
    fingerprint = stage.fingerprint(ctx, report)
    unchanged = all(previous.get(key) == value for key, value in fingerprint.items())
    if not ctx.force and unchanged and stage.present(ctx, previous):
        ctx.results[stage.name] = previous
        return StageRun(stage.name, "skipped", stage.skipped(ctx, previous))
    started = time.time()
    args = stage.command(ctx)
    if args is not None:
        run_cli(
            stage.name,
            args,
            cli_prefix=ctx.cli_prefix,
            log_path=stage_log_path(ctx.data_root, stage.name),
            on_line=report,
        )
    record = {**fingerprint, **stage.records(ctx, started)}
    ctx.results[stage.name] = record
    ctx.commit(stage.name, record)
    return StageRun(stage.name, "ran", stage.ran(ctx, record))


def run_pipeline(ctx: Context, serve: bool) -> list[StageRun]:
    """Run the stages of :data:`PIPELINE` in order with one progress display.

    Args:
        ctx: The pipeline context.
        serve: Whether the serve stage follows (only shown here; the caller starts it).

    Returns:
        What each stage did.

    Raises:
        StageFailed: A stage failed; earlier stages' outputs and records are kept.

    """
    runs: list[StageRun] = []
    with progress_display(list(STAGES)) as update:
        for stage in PIPELINE:
            name = stage.name
            update(name, "running", "starting")
            started = time.monotonic()
            try:
                outcome = run_stage(ctx, stage, functools.partial(update, name, "running"))
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
