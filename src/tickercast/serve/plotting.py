"""Forecast charts rendered in memory (matplotlib's Agg backend; no file is ever written)."""

from __future__ import annotations

import io
import threading

import pandas as pd

from tickercast import schema
from tickercast.serve.predictor import Forecast

# matplotlib's global state (font cache, rcParams) is not thread-safe; renders are rare and cached.
_RENDER_LOCK = threading.Lock()


def render_forecast_png(history: pd.DataFrame, forecast: Forecast, *, days: int = 120) -> bytes:
    """Draw the last ``days`` closes, the next-day forecast and its P10-P90 band as a PNG.

    Args:
        history: Curated rows of one ticker, sorted by date (``date`` and ``close`` are used).
        forecast: The ticker's forecast.
        days: How many trading days of history to draw.

    Returns:
        The PNG bytes.

    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    recent = history.tail(days)
    dates = pd.to_datetime(recent[schema.DATE])
    last_date, next_date = pd.Timestamp(forecast.as_of), pd.Timestamp(forecast.forecast_for)
    with _RENDER_LOCK:
        figure = Figure(figsize=(8, 4), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        axes.plot(dates, recent[schema.CLOSE], color="#1f77b4", linewidth=1.4, label="close")
        axes.fill_between(
            [last_date, next_date],
            [forecast.last_close, forecast.p10],
            [forecast.last_close, forecast.p90],
            color="#ff7f0e",
            alpha=0.25,
            label="P10-P90",
        )
        axes.plot(
            [last_date, next_date], [forecast.last_close, forecast.p50], color="#ff7f0e", linestyle="--"
        )
        axes.scatter(
            [next_date], [forecast.p50], color="#ff7f0e", zorder=3, label=f"forecast {forecast.p50:.2f}"
        )
        axes.set_title(f"{forecast.ticker}: next close forecast for {forecast.forecast_for.isoformat()}")
        axes.set_ylabel("price")
        axes.grid(alpha=0.3)
        axes.legend(loc="upper left")
        figure.autofmt_xdate()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    return buffer.getvalue()
