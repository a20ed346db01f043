"""The LightningModule that trains the TFT: one ``_common_step`` for training and validation.

Importing this module imports torch and Lightning; :mod:`tickercast.train.fit` imports it inside
its functions so that ``tickercast --help`` never pays for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import torch

if TYPE_CHECKING:
    from pytorch_forecasting import TemporalFusionTransformer


class ForecastModule(pl.LightningModule):
    """Wraps the TFT network: one ``_common_step`` for train and validation, rank-synced logging.

    Args:
        network: The TFT to train (its loss is the training loss).
        learning_rate: Adam's learning rate.

    """

    def __init__(self, network: TemporalFusionTransformer, learning_rate: float) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["network"])
        self.network = network

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run the network on one batch of encoder/decoder inputs."""
        return self.network(x)

    def _common_step(self, batch: Any, stage: str) -> torch.Tensor:
        x, y = batch
        out = self.network(x)
        loss = self.network.loss(out["prediction"], y)
        self.log(
            f"{stage}_loss",
            loss,
            on_step=False,
            on_epoch=True,
            sync_dist=True,
            prog_bar=True,
            batch_size=int(x["decoder_target"].size(0)),
        )
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """Loss of one training batch, logged as ``train_loss``."""
        return self._common_step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """Loss of one validation batch, logged as ``val_loss``."""
        return self._common_step(batch, "val")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam over every network parameter."""
        return torch.optim.Adam(self.parameters(), lr=self.hparams["learning_rate"])
