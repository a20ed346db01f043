"""Training: Lightning DDP fit, the LightningModule, MLflow tracking, the registry, evaluation, tuning."""
