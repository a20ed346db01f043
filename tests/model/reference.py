"""pytorch-forecasting's own input path, kept as the independent reference of ``model/windows.py``.

This is the path inference took before the fast one: a ``TimeSeriesDataSet`` built from the
bundle's parameters, its dataloader, and one pass per symbol the model never saw (the dataset
would merge them into one series). Tests and ``benchmarks/forecast_latency.py`` use it; no product
path does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tickercast import schema
from tickercast.model.bundle import ModelBundle
from tickercast.model.inference import PREDICT_BATCH, _longest_per_origin, quantile_column


def unseen_parts(parameters: dict[str, Any], rows: pd.DataFrame) -> list[pd.DataFrame]:
    """Known symbols together, each symbol the model never saw alone (empty parts dropped)."""
    encoder = parameters["categorical_encoders"][f"__group_id__{schema.SYMBOL}"]
    known = set(encoder.classes_)
    symbols = rows[schema.SYMBOL].astype(str)
    unseen = sorted(set(symbols) - known)
    parts = [rows[~symbols.isin(unseen)]] + [rows[symbols == symbol] for symbol in unseen]
    return [part for part in parts if len(part)]


def dataset_batches(bundle: ModelBundle, rows: pd.DataFrame, **options: Any) -> list[dict[str, Any]]:
    """The dataloader's batches of one ``TimeSeriesDataSet`` over ``rows`` (one part)."""
    from pytorch_forecasting import TimeSeriesDataSet

    dataset = TimeSeriesDataSet.from_parameters(
        bundle.dataset_parameters, rows, stop_randomization=True, **options
    )
    loader = dataset.to_dataloader(train=False, batch_size=100_000, num_workers=0)
    return [x for x, _ in loader]


def forecast_rows(
    bundle: ModelBundle, rows: pd.DataFrame, *, interpret: bool = False, **options: Any
) -> tuple[pd.DataFrame, dict[str, np.ndarray] | None]:
    """``inference.forecast_rows`` as pytorch-forecasting's dataset computes it."""
    import torch
    from pytorch_forecasting import TimeSeriesDataSet

    network = bundle.network
    network.eval()
    frames: list[pd.DataFrame] = []
    arrays: dict[str, list[np.ndarray]] = {"static": [], "encoder": [], "decoder": [], "attention": []}
    seen = 0
    for part in unseen_parts(bundle.dataset_parameters, rows):
        dataset = TimeSeriesDataSet.from_parameters(
            bundle.dataset_parameters, part, stop_randomization=True, **options
        )
        loader = dataset.to_dataloader(train=False, batch_size=PREDICT_BATCH, num_workers=0)
        with torch.no_grad():
            for x, _ in loader:
                out = network(x)
                pred = out["prediction"].numpy()
                index = dataset.x_to_index(x)
                lengths = x["decoder_lengths"].numpy()
                n_samples, n_steps = pred.shape[0], pred.shape[1]
                sample, step = np.divmod(np.arange(n_samples * n_steps), n_steps)
                keep = step < lengths[sample]
                sample, step = sample[keep], step[keep]
                frame = pd.DataFrame(
                    {
                        "sample": seen + sample,
                        schema.SYMBOL: index[schema.SYMBOL].astype(str).to_numpy()[sample],
                        schema.TIME_IDX: index[schema.TIME_IDX].to_numpy()[sample] + step,
                        "step": step + 1,
                    }
                )
                for i, q in enumerate(network.loss.quantiles):
                    frame[quantile_column(q)] = pred[sample, step, i]
                frames.append(frame)
                seen += n_samples
                if interpret:
                    interpretation = network.interpret_output(out, reduction="none")
                    arrays["static"].append(interpretation["static_variables"].numpy())
                    arrays["encoder"].append(interpretation["encoder_variables"].numpy())
                    arrays["decoder"].append(interpretation["decoder_variables"].numpy())
                    arrays["attention"].append(interpretation["attention"].numpy())
    steps = _longest_per_origin(pd.concat(frames, ignore_index=True))
    if not interpret:
        return steps, None
    return steps, {key: np.concatenate(value) for key, value in arrays.items()}
