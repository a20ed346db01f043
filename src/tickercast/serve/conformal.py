"""The service's adaptive conformal state, kept across snapshots and restarts in one JSON file.

Per model version: the :class:`~tickercast.model.calibration.AdaptiveConformal` miscoverage per
horizon, the served path forecasts still waiting for their outcome, and a rolling window of the
last settled ones (for the coverage and width gauges of ``/metrics``). When a snapshot is built
on curated data that holds the closes of forecast days, those forecasts are settled: inside the
served band or not, one ACI step per horizon and forecast day.

One process owns the file: with several uvicorn workers each keeps its own state and the file is
last-writer-wins (see docs/serving.md).
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, ValidationError

from tickercast import schema
from tickercast.files import write_text
from tickercast.model.calibration import AdaptiveConformal

log = logging.getLogger(__name__)

STATE_FILE = Path("serving") / "aci_state.json"
# Settled outcomes kept per model and horizon for the rolling coverage and width.
SETTLED_WINDOW = 500
# Model versions whose state is kept (the least recently served are dropped first).
MAX_MODELS = 8
PENDING_COLUMNS = ("symbol", "origin", "horizon", "forecast_for", "last_close", "p50", "lower", "upper")


class PendingForecast(BaseModel):
    """A served path forecast whose target close is not known yet."""

    symbol: str
    origin: datetime.date = Field(description="The forecast's as_of (last close it used).")
    horizon: int
    forecast_for: datetime.date
    last_close: float
    p50: float = Field(description="Served median price.")
    lower: float = Field(description="Served band's lower price (P10).")
    upper: float = Field(description="Served band's upper price (P90).")


class SettledForecast(BaseModel):
    """A served forecast whose outcome is known."""

    symbol: str
    forecast_for: datetime.date
    inside: bool = Field(description="Whether the actual close fell inside the served band.")
    width: float = Field(description="Band width relative to the served median, (upper - lower) / p50.")


class ModelConformal(BaseModel):
    """The conformal state of one model version."""

    aci: AdaptiveConformal = Field(default_factory=AdaptiveConformal)
    pending: list[PendingForecast] = Field(default_factory=list)
    settled: dict[int, list[SettledForecast]] = Field(
        default_factory=dict, description="Last settled forecasts per horizon, oldest first."
    )
    settled_total: dict[int, int] = Field(default_factory=dict, description="Settled since first served.")
    updated_at: datetime.datetime = Field(default_factory=lambda: datetime.datetime.now(datetime.UTC))


class ConformalState(BaseModel):
    """Everything in the state file."""

    version: int = 1
    models: dict[str, ModelConformal] = Field(default_factory=dict)


class BandStats(BaseModel):
    """What ``/metrics`` reports per horizon for the serving model."""

    horizon: int
    alpha: float = Field(description="Current ACI miscoverage.")
    coverage: float | None = Field(description="Share inside the band over the rolling window.")
    width: float | None = Field(description="Mean relative band width over the rolling window.")
    window: int = Field(description="Settled forecasts in the rolling window.")
    settled: int = Field(description="Forecasts settled since the model was first served.")


class ConformalStore:
    """The state, loaded on first use from ``path`` (``None``: in memory only) and saved atomically."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._state: ConformalState | None = None
        self._lock = threading.RLock()

    @classmethod
    def for_data_root(cls, data_root: Path) -> ConformalStore:
        """Return the store of ``DATA_ROOT/serving/aci_state.json``."""
        return cls(data_root / STATE_FILE)

    @property
    def state(self) -> ConformalState:
        """The state, read from the file the first time (missing or unreadable: a fresh state)."""
        with self._lock:
            if self._state is None:
                self._state = self._load()
            return self._state

    def _load(self) -> ConformalState:
        if self.path is None:
            return ConformalState()
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            log.info("no conformal state at %s: starting a fresh one", self.path)
            return ConformalState()
        except OSError as exc:
            log.warning("cannot read the conformal state at %s (%s): starting a fresh one", self.path, exc)
            return ConformalState()
        try:
            state = ConformalState.model_validate_json(text)
        except ValidationError as exc:
            log.warning(
                "the conformal state at %s is unreadable (%s): starting a fresh one",
                self.path,
                str(exc).splitlines()[0],
            )
            return ConformalState()
        log.info("conformal state loaded from %s: %d model version(s)", self.path, len(state.models))
        return state

    def save(self) -> None:
        """Write the state atomically; a failure is logged and the state kept in memory."""
        if self.path is None:
            return
        with self._lock:
            text = self.state.model_dump_json()
            try:
                write_text(self.path, text)
            except OSError as exc:
                log.warning("cannot write the conformal state to %s: %s", self.path, exc)

    def model(self, key: str) -> ModelConformal:
        """Return (creating it when new) the state of one model version."""
        with self._lock:
            models = self.state.models
            if key not in models:
                models[key] = ModelConformal()
                stale = sorted((k for k in models if k != key), key=lambda k: models[k].updated_at)
                for old in stale[: max(len(models) - MAX_MODELS, 0)]:
                    del models[old]
            return models[key]

    # --- settling ---------------------------------------------------------------------------------

    def settle(self, closes: pd.DataFrame) -> dict[str, int]:
        """Settle every model's pending forecasts whose day has a close in ``closes``.

        A pending forecast whose day is on or before its symbol's last date (the window's last date
        for a symbol without rows) but has no close there can never settle and is dropped.

        Args:
            closes: Curated rows with ``symbol``, ``date`` and ``close``.

        Returns:
            Settled forecasts per model key (only keys with some).

        """
        frame = closes[[schema.SYMBOL, schema.DATE, schema.CLOSE]].dropna()
        frame = pd.DataFrame(
            {
                "symbol": frame[schema.SYMBOL].astype(str).to_numpy(),
                "forecast_for": pd.to_datetime(frame[schema.DATE]).dt.date.to_numpy(),
                "actual": frame[schema.CLOSE].to_numpy(dtype=float),
            }
        ).drop_duplicates(["symbol", "forecast_for"], keep="last")
        if frame.empty:
            return {}
        last_date = frame.groupby("symbol")["forecast_for"].max()
        window_end = frame["forecast_for"].max()
        counts: dict[str, int] = {}
        with self._lock:
            for key, model in self.state.models.items():
                if not model.pending:
                    continue
                pending = pd.DataFrame([p.model_dump() for p in model.pending])
                merged = pending.merge(frame, on=["symbol", "forecast_for"], how="left")
                due = merged["forecast_for"] <= merged["symbol"].map(last_date).fillna(window_end)
                settled = merged[merged["actual"].notna()].copy()
                if not settled.empty:
                    settled["inside"] = (settled["actual"] >= settled["lower"]) & (
                        settled["actual"] <= settled["upper"]
                    )
                    model.aci.update_many(settled, inside="inside", by="forecast_for")
                    _append_settled(model, settled)
                    counts[key] = len(settled)
                keep = ~(due.to_numpy() | merged["actual"].notna().to_numpy())
                model.pending = [p for p, k in zip(model.pending, keep, strict=True) if k]
                model.updated_at = datetime.datetime.now(datetime.UTC)
        for key, count in counts.items():
            log.info("settled %d served forecasts of model %s", count, key)
        return counts

    def record(self, key: str, rows: pd.DataFrame) -> None:
        """Keep a snapshot's served path forecasts until their outcome is known.

        A forecast already pending for the same symbol, origin and horizon is replaced.

        Args:
            key: The model version that served them.
            rows: One row per symbol and horizon with the columns of :data:`PENDING_COLUMNS`
                (``origin`` and ``forecast_for`` as dates).

        """
        new = [
            PendingForecast(
                symbol=str(r.symbol),
                origin=r.origin,
                horizon=int(r.horizon),
                forecast_for=r.forecast_for,
                last_close=float(r.last_close),
                p50=float(r.p50),
                lower=float(r.lower),
                upper=float(r.upper),
            )
            for r in rows[list(PENDING_COLUMNS)].itertuples(index=False)
        ]
        with self._lock:
            model = self.model(key)
            keys = {(p.symbol, p.origin, p.horizon) for p in new}
            kept = [p for p in model.pending if (p.symbol, p.origin, p.horizon) not in keys]
            model.pending = kept + new
            model.updated_at = datetime.datetime.now(datetime.UTC)

    # --- reading ----------------------------------------------------------------------------------

    def alpha_map(self, key: str, horizons: Iterable[int]) -> dict[int, float]:
        """Return the ACI miscoverage of one model version's horizons that have taken a step.

        A horizon before its first settled outcome is left out, so that it serves the
        calibration's own ``qhat`` exactly (the stored scores may be a subsample).
        """
        with self._lock:
            aci = self.model(key).aci
            return {int(h): aci.alpha(h) for h in horizons if int(h) in aci.alphas}

    def stats(self, key: str, horizons: Iterable[int]) -> list[BandStats]:
        """Return the rolling coverage, width and alpha per horizon of one model version."""
        with self._lock:
            model = self.model(key)
            out = []
            for h in horizons:
                window = model.settled.get(int(h), [])
                out.append(
                    BandStats(
                        horizon=int(h),
                        alpha=model.aci.alpha(h),
                        coverage=float(np.mean([s.inside for s in window])) if window else None,
                        width=float(np.mean([s.width for s in window])) if window else None,
                        window=len(window),
                        settled=model.settled_total.get(int(h), 0),
                    )
                )
            return out


def _append_settled(model: ModelConformal, settled: pd.DataFrame) -> None:
    ordered = settled.sort_values(["forecast_for", "symbol"], kind="stable")
    for h, rows in ordered.groupby("horizon", sort=True):
        window = model.settled.setdefault(int(h), [])
        window.extend(
            SettledForecast(
                symbol=str(r.symbol),
                forecast_for=r.forecast_for,
                inside=bool(r.inside),
                width=float((r.upper - r.lower) / r.p50),
            )
            for r in rows.itertuples(index=False)
        )
        del window[:-SETTLED_WINDOW]
        model.settled_total[int(h)] = model.settled_total.get(int(h), 0) + len(rows)
