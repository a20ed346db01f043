"""The network: one builder for a fresh TFT (training) and for a stored one (loading a bundle)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from tickercast.model.inputs import QUANTILES

if TYPE_CHECKING:
    from pytorch_forecasting import TemporalFusionTransformer, TimeSeriesDataSet

# Constructor arguments rebuilt by :func:`build_network` rather than stored: the loss and metrics.
_REBUILT = ("loss", "logging_metrics")


def network_kwargs(network: TemporalFusionTransformer) -> dict[str, Any]:
    """Return the constructor arguments of a network, without the modules that are rebuilt on load."""
    return {k: v for k, v in dict(network.hparams).items() if k not in _REBUILT}


def build_network(
    kwargs: dict[str, Any],
    *,
    dataset: TimeSeriesDataSet | None = None,
    quantiles: tuple[float, ...] = QUANTILES,
) -> TemporalFusionTransformer:
    """Build a TFT with a quantile loss and no logging metrics.

    Args:
        kwargs: Constructor arguments: the hyper-parameters (with ``dataset``, for a fresh network),
            or every stored argument from :func:`network_kwargs` (without ``dataset``, on load).
        dataset: The training dataset to size a fresh network for; the sizes, encoders and
            variable lists are then deduced from it.
        quantiles: The predicted quantiles.

    Returns:
        The network (weights freshly initialised).

    """
    import torch
    from pytorch_forecasting import TemporalFusionTransformer
    from pytorch_forecasting.metrics import QuantileLoss

    rebuilt = {"loss": QuantileLoss(list(quantiles)), "logging_metrics": torch.nn.ModuleList([])}
    with warnings.catch_warnings():
        # Lightning's advice about saving module hyper-parameters does not apply: both are rebuilt.
        warnings.filterwarnings("ignore", message=r"Attribute '(loss|logging_metrics)' is an instance")
        if dataset is not None:
            return TemporalFusionTransformer.from_dataset(dataset, **kwargs, **rebuilt)
        return TemporalFusionTransformer(**kwargs, **rebuilt)
