"""Fixtures of the model tests: a small curated market and an untrained network sealed in a bundle.

The bundle's weights are a fresh initialisation: the format, the inputs and inference do not care
whether the network learned anything (training is tested under ``tests/train``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.factories import make_curated
from tickercast.config import ModelParams

PARAMS = ModelParams(max_encoder_length=10, batch_size=32)


@pytest.fixture(scope="session")
def curated(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Curated rows of 3 synthetic tickers over 300 trading days (100 after the warm-up)."""
    root = make_curated(tmp_path_factory.mktemp("model-data"), tickers=3, days=300, seed=11)
    return pd.read_parquet(root / "curated" / "features")


def write_untrained_bundle(curated: pd.DataFrame, path: Path, seed: int = 0) -> Path:
    """Size a fresh TFT on ``curated`` (all rows as training rows) and write it as a bundle."""
    import torch
    from pytorch_forecasting import TimeSeriesDataSet

    from tickercast.model.bundle import ModelBundle
    from tickercast.model.inputs import FeatureSpec, dataset_kwargs, model_frame
    from tickercast.model.network import build_network

    torch.manual_seed(seed)
    spec = FeatureSpec.from_columns(list(curated.columns))
    train = TimeSeriesDataSet(model_frame(curated, spec), **dataset_kwargs(spec, PARAMS))
    kwargs = {"hidden_size": 8, "attention_head_size": 1, "hidden_continuous_size": 4, "log_interval": -1}
    network = build_network(kwargs, dataset=train)
    return ModelBundle.write(
        path, network, train.get_parameters(), spec, PARAMS.model_dump(), {"run_id": "test-run"}
    )


@pytest.fixture(scope="session")
def bundle_dir(curated: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sealed bundle holding an untrained network (never modified by tests: copy it first)."""
    return write_untrained_bundle(curated, tmp_path_factory.mktemp("model-bundle") / "bundle")
