"""The walk-forward backtest: origins, the leak checks (planted leaks must be caught), outputs, the CLI."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.factories import make_curated
from tickercast.cli import app
from tickercast.config import load_settings
from tickercast.errors import UserError
from tickercast.model.bundle import ModelBundle
from tickercast.model.inputs import FeatureSpec
from tickercast.train import backtest, baselines
from tickercast.train.backtest import LeakError, choose_origins, run_backtest

DAYS = 330
LEADERBOARD_FIELDS = {
    "model",
    "horizon",
    "n",
    "mae",
    "mae_vs_naive",
    "mae_vs_naive_lo",
    "mae_vs_naive_hi",
    "mase",
    "pinball",
    "scaled_crps",
    "coverage_80",
    "width_80",
    "direction_accuracy",
    "rank",
    "champion",
}
SMALL = {"origins": 8, "step": 5, "horizon": 3}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_curated(tmp_path_factory.mktemp("backtest"), tickers=3, days=DAYS, seed=6, kappa=0.0)


def _settings(root: Path):
    return load_settings(overrides={"data_root": root})


def _bundle(**metadata: object) -> ModelBundle:
    """A bundle that only claims things in its metadata: the checks below refuse it before any forecast."""
    return ModelBundle(
        network=None,  # type: ignore[arg-type]
        dataset_parameters={"max_encoder_length": 10},
        spec=FeatureSpec(),
        hyperparameters={},
        metadata=dict(metadata),
    )


def _first_origin(root: Path) -> dt.date:
    curated = pd.read_parquet(root / "curated" / "features")
    return choose_origins(backtest.trading_dates(curated), SMALL["origins"], SMALL["step"], SMALL["horizon"])[
        0
    ]


# --- Origins and bad input ------------------------------------------------------------------------


def test_origins_are_the_last_n_spaced_k_apart_with_h_days_after() -> None:
    dates = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(400)]
    origins = choose_origins(dates, count=4, step=5, horizon=3)
    assert origins == [dates[381], dates[386], dates[391], dates[396]]
    assert origins[-1] == dates[-1 - 3]
    assert [b - a for a, b in itertools.pairwise(origins)] == [dt.timedelta(days=5)] * 3
    assert len(dates[: dates.index(origins[0])]) >= backtest.MIN_HISTORY


def test_too_little_history_says_how_many_days_it_needs_and_has() -> None:
    dates = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(300)]
    with pytest.raises(UserError, match=r"needs 551 trading days .* the data has 300"):
        choose_origins(dates, count=60, step=5, horizon=5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--origins", "60"], rf"needs 551 trading days .* the data has {DAYS}"),
        (["--horizon", "4", "--origins", "30"], rf"needs 400 trading days .* the data has {DAYS}"),
        (["--models", "naive,prophet"], "unknown model"),
        (["--models", "tft,naive"], "no champion model"),
    ],
)
def test_cli_refuses_bad_input_with_a_clear_message(root: Path, args: list[str], message: str) -> None:
    models = [] if "--models" in args else ["--models", "naive"]
    result = CliRunner().invoke(app, ["backtest", "--data", str(root), *models, *args])
    assert isinstance(result.exception, UserError), result.output
    assert result.exception.exit_code == 2
    assert re.search(message, str(result.exception)), str(result.exception)


def test_a_horizon_above_the_models_is_refused(root: Path) -> None:
    bundle = _bundle(trained_through="2000-01-03", horizon=1)
    with pytest.raises(UserError, match=r"--horizon 3 is above the model's horizon \(1 trading day"):
        run_backtest(_settings(root), bundle=bundle, models="tft,naive", track=False, **SMALL)


# --- Trained before the origin --------------------------------------------------------------------


def test_a_bundle_that_saw_the_first_origin_is_refused(root: Path) -> None:
    first = _first_origin(root)
    seen = first + dt.timedelta(days=30)
    bundle = _bundle(trained_through=seen.isoformat(), horizon=5)
    with pytest.raises(LeakError) as caught:
        run_backtest(_settings(root), bundle=bundle, models="tft,naive", track=False, **SMALL)
    message = str(caught.value)
    assert seen.isoformat() in message and first.isoformat() in message
    assert "trained_through" in message


def test_without_trained_through_the_test_window_start_decides(root: Path) -> None:
    first = _first_origin(root)
    # Today's bundles record their split: everything before test_start was used for training.
    after = _bundle(split={"test_start": (first + dt.timedelta(days=1)).isoformat()}, horizon=5)
    with pytest.raises(LeakError, match=r"split\.test_start"):
        backtest.check_unseen(after.metadata, first)
    backtest.check_unseen({"split": {"test_start": first.isoformat()}}, first)
    backtest.check_unseen({"trained_through": (first - dt.timedelta(days=1)).isoformat()}, first)
    with pytest.raises(LeakError, match="trained_through"):
        backtest.check_unseen({"trained_through": first.isoformat()}, first)
    with pytest.raises(LeakError, match="cannot tell"):
        backtest.check_unseen({}, first)


# --- Forecasts read only rows up to the origin: planted leaks ------------------------------------


def peeks_at_the_actual(curated: pd.DataFrame, origins: list[dt.date], horizon: int) -> pd.DataFrame:
    """A planted leak: the median is the realised return, read from the close at the target date."""
    rows = baselines.origin_rows(curated, origins, horizon)
    median = rows["actual"].fillna(0.0)
    return rows.assign(model="peeker", q10=median - 0.01, q50=median, q90=median + 0.01)


def fits_on_the_whole_history(curated: pd.DataFrame, origins: list[dt.date], horizon: int) -> pd.DataFrame:
    """A planted leak of the subtle kind: a drift estimated once from every row, later ones included."""
    closes = baselines.closes(curated)
    drift = closes.groupby("symbol")["close"].agg(lambda c: np.log(c.iloc[-1] / c.iloc[0]) / (len(c) - 1))
    rows = baselines.origin_rows(curated, origins, horizon)
    median = rows["horizon"] * rows["symbol"].map(drift)
    return rows.assign(model="whole", q10=median - 0.02, q50=median, q90=median + 0.02)


def honest_drift(curated: pd.DataFrame, origins: list[dt.date], horizon: int) -> pd.DataFrame:
    """A control: the same drift from the rows up to each origin only; it also reports a bogus actual."""
    closes = baselines.closes(curated)
    rows = baselines.origin_rows(curated, origins, horizon)
    medians = []
    for symbol, origin, h in zip(rows["symbol"], rows["origin"], rows["horizon"], strict=True):
        c = closes.loc[(closes["symbol"] == symbol) & (closes["date"] <= origin), "close"]
        medians.append(h * np.log(c.iloc[-1] / c.iloc[0]) / (len(c) - 1))
    median = np.array(medians)
    return rows.assign(model="honest", q10=median - 0.02, q50=median, q90=median + 0.02, actual=99.0)


@pytest.mark.parametrize(
    ("name", "model"), [("peeker", peeks_at_the_actual), ("whole", fits_on_the_whole_history)]
)
def test_a_planted_leak_is_caught(root: Path, name: str, model) -> None:
    with pytest.raises(LeakError) as caught:
        run_backtest(_settings(root), models="naive", extra_models={name: model}, track=False, **SMALL)
    message = str(caught.value)
    assert name in message and "after its origin" in message
    assert _first_origin(root).isoformat() in message


def test_an_honest_model_passes_and_is_scored_on_the_datas_truth(root: Path) -> None:
    result = run_backtest(
        _settings(root), models="naive", extra_models={"honest": honest_drift}, track=False, **SMALL
    )
    honest = result.records[result.records["model"] == "honest"]
    assert len(honest) == 3 * SMALL["origins"] * SMALL["horizon"]
    assert (honest["actual"].abs() < 1).all()  # the data's realised return, not the model's claim
    assert set(result.leaderboard["model"]) == {"naive", "honest"}


# --- A whole run: leaderboard, report, records, plots, MLflow ------------------------------------


def test_a_run_writes_the_leaderboard_report_records_plots_and_an_mlflow_run(root: Path) -> None:
    from mlflow import MlflowClient

    settings = _settings(root)
    result = run_backtest(settings, models="naive,drift,auto_ets,lightgbm", **SMALL)
    run_dir = result.run_dir
    assert run_dir.parent == root / "reports" / "backtest"

    board = json.loads((run_dir / "leaderboard.json").read_text())
    assert len(board) == 4 * SMALL["horizon"]
    assert all(set(row) == LEADERBOARD_FIELDS for row in board)
    for h in range(1, SMALL["horizon"] + 1):
        rows = [r for r in board if r["horizon"] == h]
        assert [r["rank"] for r in rows] == [1, 2, 3, 4]
        assert [r["scaled_crps"] for r in rows] == sorted(r["scaled_crps"] for r in rows)
        assert all(r["n"] == 3 * SMALL["origins"] for r in rows)
    assert not any(r["champion"] for r in board)
    by_ticker = json.loads((run_dir / "leaderboard_by_ticker.json").read_text())
    assert {r["symbol"] for r in by_ticker} == set(result.records["symbol"])

    records = pd.read_parquet(run_dir / "records.parquet")
    assert list(records.columns[: len(baselines.PATH_COLUMNS)]) == list(baselines.PATH_COLUMNS)
    assert len(records) == 4 * 3 * SMALL["origins"] * SMALL["horizon"]
    assert set(records["origin"]) == set(result.origins)

    report = (run_dir / "report.md").read_text()
    assert "## Horizon 1 trading day" in report and "## Horizon 3 trading days" in report
    assert report.count("| rank | model | n | mae | mae_vs_naive") == SMALL["horizon"]
    assert "over the random walk" in report or "the random walk:" in report
    for plot in ("scaled_crps.png", "cone.png", "coverage_h1.png"):
        assert (run_dir / plot).read_bytes()[:4] == b"\x89PNG"
        assert f"]({plot})" in report

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    run = client.get_run(result.run_id)
    assert run.data.tags["kind"] == "backtest"
    assert run.data.params["horizon"] == str(SMALL["horizon"])
    assert run.data.metrics["naive_h1_mae_vs_naive"] == 1.0
    assert run.data.metrics["drift_h3_scaled_crps"] == pytest.approx(
        next(r["scaled_crps"] for r in board if r["model"] == "drift" and r["horizon"] == 3)
    )
    artifacts = {f.path for f in client.list_artifacts(result.run_id, "backtest")}
    assert {"backtest/leaderboard.json", "backtest/report.md", "backtest/records.parquet"} <= artifacts


def test_skill_sentence_says_what_the_interval_allows() -> None:
    from tickercast.train.backtest_report import skill_sentence

    row = {
        "model": "tft",
        "horizon": 5,
        "mae_vs_naive": 0.99,
        "mae_vs_naive_lo": 0.97,
        "mae_vs_naive_hi": 1.01,
    }
    assert "no measurable skill over the random walk" in skill_sentence({**row, "scaled_crps": 0.5})
    better = {**row, "mae_vs_naive_hi": 0.995, "scaled_crps": 0.5}
    assert skill_sentence(better, 0.6).startswith("At 5 trading days, tft beats the random walk")
    worse = {
        **row,
        "mae_vs_naive": 1.05,
        "mae_vs_naive_lo": 1.02,
        "mae_vs_naive_hi": 1.08,
        "scaled_crps": 0.7,
    }
    assert "worse than the random walk" in skill_sentence(worse)


# --- The TFT from the registry (trains a tiny model) ----------------------------------------------


@pytest.mark.slow
def test_the_champion_is_refused_when_it_saw_the_origins(trained: dict) -> None:
    settings = _settings(trained["root"])
    bundle = ModelBundle.load(trained["bundle"])
    seen = bundle.metadata["trained_through"]
    with pytest.raises(LeakError) as caught:
        run_backtest(settings, models="tft,naive", origins=20, step=5, horizon=1, track=False)
    message = str(caught.value)
    assert "trained_through" in message and seen in message
    first_origin = re.search(r"first origin is (\d{4}-\d{2}-\d{2})", message)
    assert first_origin is not None and first_origin.group(1) <= seen


@pytest.mark.slow
def test_the_champion_inside_its_test_window_is_scored_and_marked(trained: dict) -> None:
    from tickercast.model import inference

    if not hasattr(inference, "walk_forward"):
        pytest.skip("tickercast.model.inference.walk_forward is not on this branch yet")
    result = run_backtest(
        _settings(trained["root"]), models="tft,naive,drift", origins=5, step=5, horizon=1, track=False
    )
    tft = result.leaderboard[result.leaderboard["model"] == "tft"]
    assert len(tft) == 1 and bool(tft["champion"].iloc[0])
    assert not result.leaderboard.loc[result.leaderboard["model"] != "tft", "champion"].any()


@pytest.mark.slow
def test_refit_every_trains_before_each_block_of_origins(tmp_path: Path) -> None:
    import inspect

    from tickercast.model import inference
    from tickercast.train import fit

    if "through" not in inspect.signature(fit.train).parameters or not hasattr(inference, "walk_forward"):
        pytest.skip("fit.train(through=) and inference.walk_forward are not on this branch yet")
    from tests.factories import write_params

    root = make_curated(tmp_path, tickers=3, days=DAYS, seed=6, kappa=0.0)
    params = write_params(root / "tiny-params.yaml")
    settings = load_settings(
        overrides={
            "data_root": root,
            "train": {"params_file": params, "max_epochs": 1, "devices": 1, "accelerator": "cpu"},
        }
    )
    result = run_backtest(
        settings, models="tft,naive", origins=2, step=5, horizon=1, refit_every=1, track=False
    )
    tft = result.records[result.records["model"] == "tft"]
    assert set(tft["origin"]) == set(result.origins)
    # The refits were registered apart from the served model: no champion appeared.
    from tickercast.model.registry_client import champion_version

    assert champion_version(settings.tracking_uri, settings.registered_model_name) is None
    assert not result.leaderboard["champion"].any()
