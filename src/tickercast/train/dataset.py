"""The training datasets: read the curated dataset, split it by trading date, build the three datasets.

The model inputs themselves (:func:`tickercast.model.inputs.model_frame` and the dataset
arguments) are shared with serving and live in :mod:`tickercast.model.inputs`.

**Split by trading date**: the last ``test_fraction`` of dates is test, the ``val_fraction`` before
it validation. A sample belongs to the split of its *target* date; its encoder may reach back
across a cut, but every encoder row is strictly before the target date, so targets never leak.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tickercast import schema
from tickercast.errors import UserError
from tickercast.manifest import CuratedManifest, read_manifest
from tickercast.model.inputs import FeatureSpec, dataset_kwargs, model_frame

if TYPE_CHECKING:
    from pytorch_forecasting import TimeSeriesDataSet

    from tickercast.config import ModelParams, Settings


@dataclass
class Split:
    """Where the trading-date cuts fall, as dates and as ``time_idx`` values."""

    val_start: pd.Timestamp
    test_start: pd.Timestamp
    val_start_idx: int
    test_start_idx: int
    last_date: pd.Timestamp
    first_date: pd.Timestamp

    def as_dict(self) -> dict[str, str | int]:
        """JSON-friendly view (logged as MLflow params and written in reports)."""
        return {
            "first_date": self.first_date.date().isoformat(),
            "val_start": self.val_start.date().isoformat(),
            "test_start": self.test_start.date().isoformat(),
            "last_date": self.last_date.date().isoformat(),
            "val_start_idx": self.val_start_idx,
            "test_start_idx": self.test_start_idx,
        }


@dataclass
class Datasets:
    """The three datasets of a run; validation and test reuse the training set's fitted encoders."""

    frame: pd.DataFrame
    spec: FeatureSpec
    split: Split
    train: TimeSeriesDataSet
    val: TimeSeriesDataSet
    test: TimeSeriesDataSet


def read_curated(settings: Settings) -> tuple[pd.DataFrame, CuratedManifest]:
    """Read the published curated dataset and its manifest.

    Args:
        settings: Settings giving the data root.

    Returns:
        The curated rows and the manifest.

    Raises:
        UserError: The dataset or manifest is missing or unreadable.

    """
    features_dir, manifest_path = settings.features_dir, settings.manifest_path
    if not manifest_path.is_file() or not features_dir.exists():
        raise UserError(
            f"no curated dataset under {settings.curated_dir}; run `tickercast preprocess --data "
            f"{settings.data_root}` first"
        )
    manifest = read_manifest(manifest_path)
    try:
        frame = pd.read_parquet(features_dir)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the curated dataset under {settings.curated_dir}: {exc}") from None
    missing = [c for c in schema.BASE_CURATED_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"curated dataset lacks columns {', '.join(missing)}; rerun `tickercast preprocess`")
    return frame, manifest


def compute_split(frame: pd.DataFrame, val_fraction: float, test_fraction: float) -> Split:
    """Cut the trading dates of ``frame``: the last ``test_fraction`` is test, the slice before it validation.

    Args:
        frame: Model rows (from :func:`model_frame`).
        val_fraction: Share of trading dates for validation.
        test_fraction: Share of trading dates for test.

    Returns:
        The cut points.

    Raises:
        UserError: Too few trading dates to split.

    """
    dates = np.sort(frame[schema.DATE].unique())
    n = len(dates)
    n_test = max(1, round(n * test_fraction))
    n_val = max(1, round(n * val_fraction))
    if n - n_test - n_val < 2:
        raise UserError(f"only {n} trading dates after the indicator warm-up: too few to split")
    test_start = pd.Timestamp(dates[n - n_test])
    val_start = pd.Timestamp(dates[n - n_test - n_val])
    by_date = frame.groupby(schema.DATE)[schema.TIME_IDX].min()
    return Split(
        val_start=val_start,
        test_start=test_start,
        val_start_idx=int(by_date.loc[val_start]),
        test_start_idx=int(by_date.loc[test_start]),
        first_date=pd.Timestamp(dates[0]),
        last_date=pd.Timestamp(dates[-1]),
    )


def build_datasets(
    curated: pd.DataFrame, params: ModelParams, val_fraction: float = 0.1, test_fraction: float = 0.1
) -> Datasets:
    """Build the training, validation and test datasets from curated rows.

    Encoders and normalisers are fitted on the training rows only and reused for validation and
    test (and saved in the bundle for serving).

    Args:
        curated: The curated dataset (all symbols).
        params: Model hyper-parameters (the encoder length matters here).
        val_fraction: Share of trading dates for validation.
        test_fraction: Share of trading dates for test.

    Returns:
        The datasets, the model frame and the split.

    Raises:
        UserError: Too little data for the encoder length and split.

    """
    from pytorch_forecasting import TimeSeriesDataSet

    spec = FeatureSpec.from_columns(list(curated.columns))
    frame = model_frame(curated, spec)
    if frame.empty:
        raise UserError(
            "no curated rows left after the indicator warm-up (need more than 200 days per symbol)"
        )
    split = compute_split(frame, val_fraction, test_fraction)
    train_rows = frame[frame[schema.TIME_IDX] < split.val_start_idx]
    if train_rows.groupby(schema.SYMBOL).size().max() <= params.max_encoder_length:
        raise UserError(
            f"the training period is shorter than the encoder length ({params.max_encoder_length} days); "
            "use more history or a shorter max_encoder_length"
        )
    train = TimeSeriesDataSet(train_rows, **dataset_kwargs(spec, params))
    val = TimeSeriesDataSet.from_dataset(
        train,
        frame[frame[schema.TIME_IDX] < split.test_start_idx],
        min_prediction_idx=split.val_start_idx,
        stop_randomization=True,
    )
    test = TimeSeriesDataSet.from_dataset(
        train, frame, min_prediction_idx=split.test_start_idx, stop_randomization=True
    )
    return Datasets(frame=frame, spec=spec, split=split, train=train, val=val, test=test)
