"""The walk-forward backtest: every model forecasts from the same rolling origins; a leaderboard scores them.

Origins are the last ``N`` trading dates of the data spaced ``K`` apart, the last one ``H`` trading
days before the end, so every forecast can be settled. Two rules keep the evaluation honest:

- **Trained before the origin.** A model bundle whose metadata says it saw data on or after the
  first origin is refused (:func:`check_unseen`); ``--refit-every M`` instead trains a TFT on the
  data before every M-th origin.
- **Forecasts read only rows up to the origin.** Each model forecasts some origins again from data
  cut at the origin; a forecast that changes reads the future and stops the run
  (:func:`audit_cutoff`). This catches a planted leak in any model, baselines included.

Every model's records are then given the same truth (close at the origin, realised log return)
from the data, scored on the cells every model forecast (:mod:`tickercast.train.metrics`) and
written as ``DIR/reports/backtest/<run>/`` (:mod:`tickercast.train.backtest_report`) and to MLflow.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tickercast import schema
from tickercast.errors import BundleError, UserError
from tickercast.train import metrics
from tickercast.train.baselines import (
    BASELINES,
    PATH_COLUMNS,
    QUANTILE_COLUMNS,
    Forecaster,
    closes,
    origin_rows,
)
from tickercast.train.gate import learnt_through

if TYPE_CHECKING:
    from tickercast.config import Settings
    from tickercast.model.bundle import ModelBundle

log = logging.getLogger(__name__)

TFT = "tft"
# The TFT without its conformal layer and shrinkage: what the calibration adds is the difference.
TFT_RAW = "tft_raw"
MODEL_NAMES = (TFT, *BASELINES)
DEFAULT_ORIGINS = 60
DEFAULT_STEP = 5
DEFAULT_HORIZON = 5
MAX_HORIZON = 20
REFIT_SUFFIX = "-backtest"
# Trading days before the first origin: the 200-day indicator warm-up plus rows to fit the baselines on.
MIN_HISTORY = 250
# Origins forecast a second time from data cut at the origin (the first and the middle one).
AUDIT_ORIGINS = 2
# Float noise between a batched and a one-origin forecast stays far below this (log-return units).
AUDIT_TOLERANCE = 1e-6


class LeakError(UserError):
    """A model saw, or reads, data on or after an origin it is evaluated at."""


@dataclass
class BacktestResult:
    """What a backtest produced."""

    run_dir: Path
    leaderboard: pd.DataFrame
    by_ticker: pd.DataFrame
    records: pd.DataFrame
    origins: list[dt.date]
    horizon: int
    run_id: str | None = None
    files: list[Path] = field(default_factory=list)


# --- The plan: models, origins, horizon ------------------------------------------------------------


def parse_models(text: str | None) -> list[str]:
    """Model names from ``--models`` (comma-separated; default all); ``naive`` is always added.

    Raises:
        UserError: An unknown model name.

    """
    names = [n.strip() for n in (text or ",".join(MODEL_NAMES)).split(",") if n.strip()]
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        raise UserError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODEL_NAMES)}")
    # Every score is relative to the random walk, so it always runs.
    return list(dict.fromkeys(["naive", *names]))


def trading_dates(curated: pd.DataFrame) -> list[dt.date]:
    """Return the sorted distinct dates of the curated rows."""
    return sorted(set(pd.to_datetime(curated[schema.DATE]).dt.date))


def choose_origins(
    dates: Sequence[dt.date], count: int, step: int, horizon: int, min_history: int = MIN_HISTORY
) -> list[dt.date]:
    """Return the last ``count`` dates spaced ``step`` apart with ``horizon`` dates after the last one.

    Args:
        dates: Sorted trading dates of the data.
        count: Number of origins ``N``.
        step: Trading days between origins ``K``.
        horizon: Largest horizon ``H``.
        min_history: Trading days needed before the first origin.

    Returns:
        The origins, oldest first.

    Raises:
        UserError: Too few dates; the message says how many are needed and how many there are.

    """
    needed = min_history + (count - 1) * step + 1 + horizon
    if len(dates) < needed:
        raise UserError(
            f"too little history for {count} origin(s) {step} day(s) apart with horizon {horizon}: "
            f"needs {needed} trading days ({min_history} before the first origin, "
            f"{(count - 1) * step + 1} spanned by the origins, {horizon} after the last), "
            f"the data has {len(dates)}; ask for fewer --origins, a smaller --step or --horizon"
        )
    last = len(dates) - 1 - horizon
    return [dates[last - i * step] for i in reversed(range(count))]


def fitting_origins(
    dates: Sequence[dt.date], metadata: Mapping[str, Any] | None, step: int, horizon: int
) -> int:
    """Return the default origin count: 60, or fewer where the TFT's unseen window holds fewer.

    Args:
        dates: Sorted trading dates of the data.
        metadata: The evaluated bundle's metadata (``None`` without a TFT).
        step: Trading days between origins.
        horizon: Largest horizon.

    Returns:
        How many origins fit after the last date the model learnt from (at least 1; a model that
        saw everything is refused later with both dates named).

    """
    known = learnt_through(metadata) if metadata is not None else None
    if known is None:
        return DEFAULT_ORIGINS
    unseen = [d for d in dates[: len(dates) - horizon] if d > known[0]]
    return max(1, min(DEFAULT_ORIGINS, (len(unseen) - 1) // step + 1)) if unseen else 1


def model_horizon(metadata: Mapping[str, Any]) -> int:
    """Return the largest horizon a bundle forecasts (``metadata["horizon"]``, absent = 1)."""
    return int(metadata.get("horizon", 1) or 1)


def check_horizon(horizon: int, metadata: Mapping[str, Any] | None) -> None:
    """Refuse a horizon above :data:`MAX_HORIZON` or above the model's.

    Raises:
        UserError: Which horizon was asked and which is possible.

    """
    if not 1 <= horizon <= MAX_HORIZON:
        raise UserError(f"--horizon must be between 1 and {MAX_HORIZON}, got {horizon}")
    if metadata is not None and horizon > model_horizon(metadata):
        raise UserError(
            f"--horizon {horizon} is above the model's horizon ({model_horizon(metadata)} trading "
            f"day(s)); ask for --horizon {model_horizon(metadata)} or less, or leave tft out (--models)"
        )


def check_unseen(metadata: Mapping[str, Any], first_origin: dt.date) -> None:
    """Refuse a model that saw data on or after the first origin.

    Raises:
        LeakError: Naming the date the model saw through and the first origin; also when the
            metadata does not say what the model saw.

    """
    seen = learnt_through(metadata)
    if seen is None:
        raise LeakError(
            "the model's metadata says neither trained_through nor split.test_start, so the backtest "
            "cannot tell whether it saw the origins; use --refit-every to train on data before them"
        )
    through, source = seen
    if through >= first_origin:
        raise LeakError(
            f"the model saw data through {through.isoformat()} ({source}) but the first origin is "
            f"{first_origin.isoformat()}: it would be scored on data it was trained on. Ask for fewer "
            "--origins (or a smaller --step), use a model trained on earlier data, or --refit-every M"
        )


# --- Running the models ---------------------------------------------------------------------------


def tft_forecaster(bundle: ModelBundle) -> Forecaster:
    """Wrap the TFT as a forecaster: :func:`tickercast.model.inference.walk_forward` over the origins."""
    from tickercast.model import inference

    walk_forward = inference.walk_forward

    def forecast(curated: pd.DataFrame, origins: Sequence[dt.date], horizon: int) -> pd.DataFrame:
        return walk_forward(bundle, curated, list(origins), horizon)

    return forecast


def calibrate_tft(records: pd.DataFrame) -> pd.DataFrame:
    """Give the TFT its calibrated band as it would have had it at each origin, and keep its raw rows.

    The conformal layer and the shrinkage of an origin's forecasts are fitted on the TFT's own
    records settled by that day (:func:`tickercast.model.calibration.calibrate_online`): the
    bundle's stored calibration saw outcomes of its held-out window, which the origins lie in. The
    model as trained, without the layer, stays on the board as ``tft_raw``.
    """
    from tickercast.model.calibration import calibrate_online

    mine = records["model"] == TFT
    if not mine.any():
        return records
    calibrated = calibrate_online(records[mine]).drop(columns=["calibrated"])
    raw = records[mine].assign(model=TFT_RAW)
    return pd.concat([calibrated, raw, records[~mine]], ignore_index=True)


def validate_records(name: str, records: pd.DataFrame, origins: Sequence[dt.date], horizon: int) -> None:
    """Check a model's records against the path-record contract.

    Raises:
        LeakError: A record whose origin was not asked for or whose horizon is outside 1..H.
        ValueError: Columns are missing.

    """
    missing = [c for c in ("model", "symbol", "origin", "horizon", *QUANTILE_COLUMNS) if c not in records]
    if missing:
        raise ValueError(f"{name}'s records lack columns {', '.join(missing)}")
    stray = set(records["origin"]) - set(origins)
    if stray:
        raise LeakError(f"{name} forecast from origins that were not asked for: {sorted(stray)[:3]}")
    if len(records) and not records["horizon"].between(1, horizon).all():
        raise LeakError(f"{name} returned horizons outside 1..{horizon}")


def audit_origins(origins: Sequence[dt.date]) -> list[dt.date]:
    """Pick the origins to forecast again from cut data: the first (most future to peek at) and the middle."""
    picks = [origins[0], origins[len(origins) // 2]]
    return list(dict.fromkeys(picks))[:AUDIT_ORIGINS]


def audit_cutoff(
    name: str,
    forecaster: Forecaster,
    curated: pd.DataFrame,
    records: pd.DataFrame,
    origins: Sequence[dt.date],
    horizon: int,
) -> None:
    """Forecast ``origins`` again from rows dated up to each one; any change means the model reads the future.

    Args:
        name: The model (for the message).
        forecaster: The model.
        curated: Every curated row.
        records: The model's records from the full data.
        origins: The origins to check.
        horizon: Largest horizon.

    Raises:
        LeakError: A forecast differs, or exists in only one of the two runs.

    """
    dates = pd.to_datetime(curated[schema.DATE]).dt.date
    key = ["symbol", "horizon"]
    for origin in origins:
        cut = curated.loc[dates <= origin]
        again = forecaster(cut, [origin], horizon)
        full = records.loc[records["origin"] == origin, [*key, *QUANTILE_COLUMNS]]
        again = again.loc[again["origin"] == origin, [*key, *QUANTILE_COLUMNS]]
        both = full.merge(again, on=key, how="outer", suffixes=("", "_cut"), indicator=True)
        if (both["_merge"] != "both").any():
            raise LeakError(
                f"{name} forecasts a different set of tickers or horizons at {origin.isoformat()} when "
                "rows after the origin are removed: it depends on data after its origin"
            )
        for column in QUANTILE_COLUMNS:
            a, b = both[column].to_numpy(float), both[f"{column}_cut"].to_numpy(float)
            if not np.allclose(a, b, rtol=0, atol=AUDIT_TOLERANCE, equal_nan=True):
                worst = float(np.nanmax(np.abs(a - b)))
                raise LeakError(
                    f"{name}'s forecast at origin {origin.isoformat()} changes when rows after the origin "
                    f"are removed ({column} moves by up to {worst:.3g}): it reads data after its origin"
                )


def run_model(
    name: str,
    forecaster: Forecaster,
    curated: pd.DataFrame,
    origins: Sequence[dt.date],
    horizon: int,
    *,
    audit: bool = True,
) -> pd.DataFrame:
    """Forecast every origin with one model, check the records and audit the cut-off.

    Returns:
        The model's path records.

    Raises:
        LeakError: The model breaks the origin rule.

    """
    started = time.perf_counter()
    log.info("%s: forecasting %d origin(s)...", name, len(origins))
    records = forecaster(curated, origins, horizon)
    validate_records(name, records, origins, horizon)
    if audit:
        audit_cutoff(name, forecaster, curated, records, audit_origins(origins), horizon)
    log.info(
        "%s: %d forecasts in %.1f s, cut-off audit passed", name, len(records), time.perf_counter() - started
    )
    return records


def with_truth(records: pd.DataFrame, skeleton: pd.DataFrame) -> pd.DataFrame:
    """Give every model's records the same truth from the data: close at the origin, vol, actual."""
    keep = [c for c in records.columns if c not in ("forecast_for", "last_close", "vol", "actual")]
    out = records[keep].merge(skeleton, on=["symbol", "origin", "horizon"], how="inner")
    extra = [c for c in out.columns if c not in PATH_COLUMNS]
    return out[[*PATH_COLUMNS, *extra]]


def refit_records(
    settings: Settings, curated: pd.DataFrame, origins: Sequence[dt.date], horizon: int, every: int
) -> pd.DataFrame:
    """Train a TFT on the data before every ``every``-th origin and forecast the origins up to the next.

    Calls ``tickercast.train.fit.train(settings, through=day)`` with the trading day before the
    block's first origin (registering under ``<name>-backtest``), then checks what the new bundle
    saw and audits its cut-off.

    Returns:
        The TFT's path records over all origins.

    """
    from tickercast.model.bundle import ModelBundle
    from tickercast.train import fit

    train: Callable[..., Any] = fit.train  # ``through`` drops rows dated after it before the split
    # Refits register under their own name, so a model trained on older data never meets the
    # promotion gate of the served one.
    # One process: DDP would start its other ranks by re-running this backtest's command line.
    refit_settings = settings.model_copy(
        update={
            "registered_model_name": f"{settings.registered_model_name}{REFIT_SUFFIX}",
            "train": settings.train.model_copy(update={"devices": 1, "num_nodes": 1}),
        }
    )
    dates = trading_dates(curated)
    parts = []
    for start in range(0, len(origins), every):
        block = list(origins[start : start + every])
        through = dates[dates.index(block[0]) - 1]
        log.info("tft: training on data through %s for origins %s .. %s", through, block[0], block[-1])
        result = train(refit_settings, through=through)
        bundle = ModelBundle.load(result.bundle_dir)
        check_unseen(bundle.metadata, block[0])
        check_horizon(horizon, bundle.metadata)
        parts.append(run_model(TFT, tft_forecaster(bundle), curated, block, horizon))
    return pd.concat(parts, ignore_index=True)


def score_records(
    records: pd.DataFrame, curated: pd.DataFrame, origins: Sequence[dt.date], horizon: int, step: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score the records: the leaderboard (per model and horizon) and the same per ticker.

    Returns:
        ``(leaderboard, by_ticker)`` as from :func:`tickercast.train.metrics.leaderboard_table`.

    """
    rows = metrics.common_rows(metrics.effective_quantiles(records))
    dropped = len(records) - len(rows)
    if dropped:
        log.info(
            "scoring %d common settled forecasts (%d left out: unsettled or not every model)",
            len(rows),
            dropped,
        )
    if rows.empty:
        raise UserError("no origin has a settled forecast from every model; nothing to score")
    scales = metrics.naive_scales(closes(curated), origins, horizon)
    rows = rows.merge(scales, on=["symbol", "origin", "horizon"], how="left")
    board = metrics.leaderboard_table(rows, ("horizon",), step)
    by_ticker = metrics.leaderboard_table(rows, ("horizon", "symbol"), step)
    return board, by_ticker


# --- The whole run --------------------------------------------------------------------------------


@dataclass
class TftSource:
    """Where the TFT came from: a bundle (and whether it is the champion), or refits."""

    bundle: ModelBundle | None = None
    uri: str | None = None
    version: str | None = None
    champion: bool = False


def resolve_tft(settings: Settings, model_uri: str | None) -> TftSource:
    """Load the bundle to evaluate: a folder, ``models:/...`` or (default) the champion.

    Raises:
        UserError: No champion registered, or the bundle cannot be loaded.

    """
    from tickercast.config import CHAMPION_ALIAS
    from tickercast.model.bundle import ModelBundle
    from tickercast.model.registry_client import champion_version, load_from_registry

    uri = model_uri or f"models:/{settings.registered_model_name}@{CHAMPION_ALIAS}"
    champion = champion_version(settings.tracking_uri, settings.registered_model_name)
    if model_uri is None and champion is None:
        raise UserError(
            f"no champion model in {settings.tracking_uri}: train one first, pass --model-uri, "
            "or leave tft out (--models naive,drift,...)"
        )
    version: str | None
    try:
        if Path(uri).is_dir():
            bundle = ModelBundle.load(Path(uri))
            version = bundle.metadata.get("model_version")
        else:
            bundle, version = load_from_registry(uri, settings.tracking_uri)
    except BundleError as exc:
        raise UserError(str(exc)) from None
    version = None if version is None else str(version)
    return TftSource(
        bundle=bundle, uri=uri, version=version, champion=version is not None and version == champion
    )


def run_backtest(
    settings: Settings,
    *,
    model_uri: str | None = None,
    origins: int | None = None,
    step: int = DEFAULT_STEP,
    horizon: int | None = None,
    refit_every: int | None = None,
    models: str | None = None,
    bundle: ModelBundle | None = None,
    extra_models: Mapping[str, Forecaster] | None = None,
    track: bool = True,
) -> BacktestResult:
    """Run the walk-forward backtest and write its leaderboard, report, records and plots.

    Args:
        settings: Data root, tracking URI, registered model name (and training settings for refits).
        model_uri: The TFT to evaluate (bundle folder or ``models:/...``; default the champion).
        origins: Number of origins ``N``.
        step: Trading days between origins ``K``.
        horizon: Largest horizon ``H`` (default: the TFT's, or 5 without a TFT bundle).
        refit_every: Train a TFT before every M-th origin instead of loading one.
        models: Comma-separated model names (default all).
        bundle: A loaded bundle to evaluate instead of ``model_uri``.
        extra_models: More forecasters by name (a model under test), run like the baselines.
        track: Log the run to MLflow.

    Returns:
        The result with the leaderboard and where the files went.

    Raises:
        UserError: Bad arguments or too little data.
        LeakError: A model saw or reads data on or after an origin.

    """
    from tickercast.train.backtest_report import write_outputs
    from tickercast.train.dataset import read_curated

    names = parse_models(models)
    if refit_every is not None and refit_every < 1:
        raise UserError(f"--refit-every must be at least 1, got {refit_every}")
    curated, manifest = read_curated(settings)
    source = TftSource()
    if TFT in names and refit_every is None:
        source = (
            TftSource(bundle=bundle, uri="(given bundle)") if bundle else resolve_tft(settings, model_uri)
        )
    metadata = source.bundle.metadata if source.bundle is not None else None
    horizon = horizon or (model_horizon(metadata) if metadata is not None else DEFAULT_HORIZON)
    check_horizon(horizon, metadata)
    dates = trading_dates(curated)
    if origins is None:
        origins = fitting_origins(dates, metadata, step, horizon)
    chosen = choose_origins(dates, origins, step, horizon)
    if metadata is not None:
        check_unseen(metadata, chosen[0])
    log.info(
        "backtest: %d origins %s .. %s, every %d trading day(s), horizons 1..%d, models %s",
        len(chosen),
        chosen[0],
        chosen[-1],
        step,
        horizon,
        ", ".join(names),
    )

    forecasters: dict[str, Forecaster] = {n: BASELINES[n] for n in names if n in BASELINES}
    forecasters.update(extra_models or {})
    if source.bundle is not None:
        forecasters = {TFT: tft_forecaster(source.bundle), **forecasters}
    parts = [run_model(n, f, curated, chosen, horizon) for n, f in forecasters.items()]
    if TFT in names and refit_every is not None:
        parts.insert(0, refit_records(settings, curated, chosen, horizon, refit_every))
    skeleton = origin_rows(curated, chosen, horizon)
    records = calibrate_tft(pd.concat([with_truth(p, skeleton) for p in parts], ignore_index=True))
    board, by_ticker = score_records(records, curated, chosen, horizon, step)
    board["champion"] = (board["model"] == TFT) & source.champion

    context = {
        "data version": manifest.data_version,
        "origins": f"{len(chosen)}: {chosen[0]} .. {chosen[-1]}, every {step} trading day(s)",
        "horizons": f"1..{horizon} trading day(s)",
        "models": ", ".join(dict.fromkeys(records["model"])),
        "tft": _describe_tft(source, refit_every) if TFT in names else "not run",
    }
    result = BacktestResult(
        run_dir=_new_run_dir(settings.reports_dir / "backtest"),
        leaderboard=board,
        by_ticker=by_ticker,
        records=records,
        origins=chosen,
        horizon=horizon,
    )
    result.files = write_outputs(result, context, closes(curated))
    if track:
        params = {
            "kind": "backtest",
            "origins": len(chosen),
            "step": step,
            "horizon": horizon,
            "refit_every": refit_every,
            "models": ",".join(sorted(set(records["model"]))),
            "first_origin": chosen[0].isoformat(),
            "last_origin": chosen[-1].isoformat(),
            "data_version": manifest.data_version,
            "model_uri": source.uri,
            "model_version": source.version,
        }
        result.run_id = log_run(settings, result, params)
    return result


def _describe_tft(source: TftSource, refit_every: int | None) -> str:
    if refit_every is not None:
        return f"trained on the data before every {refit_every}th origin"
    version = (
        f" (version {source.version}{', champion' if source.champion else ''})" if source.version else ""
    )
    return f"{source.uri}{version}"


def _new_run_dir(parent: Path) -> Path:
    """``parent/<UTC timestamp>`` (with a suffix when two runs start in the same second)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    path, n = parent / stamp, 1
    while path.exists():
        n += 1
        path = parent / f"{stamp}-{n}"
    path.mkdir(parents=True)
    return path


def metric_name(model: str, horizon: int, metric: str) -> str:
    """MLflow metric name of one leaderboard cell, e.g. ``tft_h1_mae_vs_naive``."""
    return f"{model}_h{horizon}_{metric}"


def log_run(settings: Settings, result: BacktestResult, params: Mapping[str, Any]) -> str:
    """Log a backtest as an MLflow run tagged ``kind=backtest``: params, every leaderboard cell, the files.

    Returns:
        The run id.

    """
    from mlflow.entities import Param

    from tickercast.train import tracking

    client = tracking.client_for(settings.tracking_uri)
    tags = {"mlflow.runName": f"backtest-{result.run_dir.name}", "kind": "backtest"}
    commit = tracking.git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    run = client.create_run(tracking.experiment_id(settings), tags=tags)
    run_id = run.info.run_id
    try:
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
        values = {
            metric_name(row["model"], int(row["horizon"]), m): row[m]
            for row in result.leaderboard.to_dict("records")
            for m in metrics.METRICS
        }
        tracking.log_metrics(client, run_id, values)
        client.log_artifacts(run_id, str(result.run_dir), "backtest")
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return run_id
