"""Prometheus metrics of one app instance, on a registry of its own (tests build many apps).

With several uvicorn workers each process exposes its own figures; Kubernetes deployments run one
worker per pod and scale pods, so every scrape target is one process.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from tickercast.serve.conformal import BandStats

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Route label for requests that matched no route: keeps the label set bounded whatever URL is sent.
UNMATCHED_ROUTE = "<unmatched>"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServeMetrics:
    """The service's metrics: HTTP traffic, forecasts served, the model and data in use, reloads, bands."""

    def __init__(self) -> None:
        # The *_created series double the exposition for no use here (process-wide switch).
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "tickercast_http_requests",
            "HTTP requests answered, by route template, method and status code",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "tickercast_http_request_duration_seconds",
            "Time from receiving a request to sending the last byte of its response",
            ("route", "method", "status"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.forecasts_served = Counter(
            "tickercast_forecasts_served",
            "Forecasts returned, by endpoint (precomputed predict/batch, or computed on demand)",
            ("endpoint",),
            registry=self.registry,
        )
        self.forecasts_served_predict = self.forecasts_served.labels("predict")
        self.model_info = Gauge(
            "tickercast_model_info",
            "The model and data being served (value 1; the labels carry the versions)",
            ("model_version", "run_id", "data_version"),
            registry=self.registry,
        )
        self.data_age = Gauge(
            "tickercast_data_age_seconds",
            "Seconds since the most recent trading date in the served data (midnight UTC)",
            registry=self.registry,
        )
        self.ready = Gauge(
            "tickercast_ready", "1 when a model and data are loaded and serving", registry=self.registry
        )
        self.reloads = Counter(
            "tickercast_model_reloads",
            "Successful model or data swaps after start-up",
            registry=self.registry,
        )
        self.band_coverage = Gauge(
            "tickercast_band_coverage",
            "Share of the last settled served forecasts whose close fell inside the served P10-P90 band",
            ("horizon",),
            registry=self.registry,
        )
        self.band_width = Gauge(
            "tickercast_band_width",
            "Mean width of the served band over the same forecasts, relative to the median ((P90-P10)/P50)",
            ("horizon",),
            registry=self.registry,
        )
        self.band_settled = Gauge(
            "tickercast_band_settled",
            "Settled served forecasts in the rolling window behind the coverage and width gauges",
            ("horizon",),
            registry=self.registry,
        )
        self.aci_alpha = Gauge(
            "tickercast_aci_alpha",
            "Adaptive conformal miscoverage the served bands use (nominal 0.2 for P10-P90)",
            ("horizon",),
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.reload_failures = Counter(
            "tickercast_model_reload_failures",
            "Model loads that failed (missing artifact, bad hash, error); the old model kept serving",
            registry=self.registry,
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Record one answered request."""
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            # labels() validates and locks on every call; the hot path looks its children up once.
            labels = (route, method, str(status))
            children = self._children.setdefault(
                key, (self.requests.labels(*labels), self.latency.labels(*labels))
            )
        children[0].inc()
        children[1].observe(seconds)

    def set_model(self, model_version: str | None, run_id: str | None, data_version: str | None) -> None:
        """Publish the versions now serving (only one label set is ever present)."""
        self.model_info.clear()
        self.model_info.labels(model_version or "", run_id or "", data_version or "").set(1)
        self.ready.set(1)

    def set_bands(self, bands: Iterable[BandStats]) -> None:
        """Publish the serving model's band figures per horizon (horizons without outcomes: no sample)."""
        for gauge in (self.band_coverage, self.band_width, self.band_settled, self.aci_alpha):
            gauge.clear()
        for stats in bands:
            label = str(stats.horizon)
            self.aci_alpha.labels(label).set(stats.alpha)
            self.band_settled.labels(label).set(stats.window)
            if stats.coverage is not None:
                self.band_coverage.labels(label).set(stats.coverage)
            if stats.width is not None:
                self.band_width.labels(label).set(stats.width)

    def track_data_age(self, latest_date: Callable[[], datetime.date | None]) -> None:
        """Compute the data age at scrape time from the serving snapshot's latest date."""

        def age() -> float:
            latest = latest_date()
            if latest is None:
                return float("nan")
            midnight = datetime.datetime.combine(latest, datetime.time(), tzinfo=datetime.UTC)
            return (datetime.datetime.now(datetime.UTC) - midnight).total_seconds()

        self.data_age.set_function(age)

    def render(self) -> bytes:
        """Return the text exposition of every metric."""
        return generate_latest(self.registry)
