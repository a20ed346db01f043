"""The model shared by training and serving: bundle format, network, model inputs and inference."""
