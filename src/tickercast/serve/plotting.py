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
    """Draw the last ``days`` closes and the forecast cone (P50 and the P10-P90 band per day) as a PNG.

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
    last_date = pd.Timestamp(forecast.as_of)
    # The cone starts at the last close; a forecast without a path is its next day alone.
    points = forecast.path or ()
    steps = [pd.Timestamp(p.forecast_for) for p in points] or [pd.Timestamp(forecast.forecast_for)]
    p10s = [p.p10 for p in points] or [forecast.p10]
    p50s = [p.p50 for p in points] or [forecast.p50]
    p90s = [p.p90 for p in points] or [forecast.p90]
    cone_x = [last_date, *steps]
    with _RENDER_LOCK:
        figure = Figure(figsize=(8, 4), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        axes.plot(dates, recent[schema.CLOSE], color="#1f77b4", linewidth=1.4, label="close")
        axes.fill_between(
            cone_x,
            [forecast.last_close, *p10s],
            [forecast.last_close, *p90s],
            color="#ff7f0e",
            alpha=0.25,
            label="P10-P90",
        )
        axes.plot(cone_x, [forecast.last_close, *p50s], color="#ff7f0e", linestyle="--")
        axes.scatter(steps, p50s, color="#ff7f0e", s=12, zorder=3, label=f"next close {forecast.p50:.2f}")
        until = steps[-1].date().isoformat()
        axes.set_title(f"{forecast.ticker}: forecast from {forecast.forecast_for.isoformat()} to {until}")
        axes.set_ylabel("price")
        axes.grid(alpha=0.3)
        axes.legend(loc="upper left")
        figure.autofmt_xdate()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    return buffer.getvalue()
