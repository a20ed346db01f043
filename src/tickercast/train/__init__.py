"""Training: TimeSeriesDataSet, Lightning DDP fit, MLflow tracking, evaluation, tuning, the model bundle."""
