"""Serving: the FastAPI app, the predictor, routes, metrics and the dashboard."""
