"""Prometheus metrics, in a registry of their own per app (no process-global state):

zooserve_requests_total{model,endpoint,outcome}       outcome: success | client_error | server_error | rejected
zooserve_request_duration_seconds{model,endpoint}     whole request, body read to response ready
zooserve_queue_duration_seconds{model}                per request: waiting for its batch to start
zooserve_compute_duration_seconds{model}              per batch: stacking inputs + onnxruntime run
zooserve_batch_size{model}                            rows per executed batch
zooserve_model_ready{model,version}                   1 ready, 0 not
zooserve_requests_in_flight                           HTTP requests being handled
zooserve_queue_size{model}                            requests waiting (at scrape time)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256)
CONTENT_TYPE = CONTENT_TYPE_LATEST

OUTCOMES = ("success", "client_error", "server_error", "rejected")


class _QueueCollector:
    def __init__(self, depths: Callable[[], Iterable[tuple[str, int]]]) -> None:
        self._depths = depths

    def collect(self):
        family = GaugeMetricFamily("zooserve_queue_size", "Requests waiting in a model's queue", labels=["model"])
        for model, depth in self._depths():
            family.add_metric([model], depth)
        yield family


class Metrics:
    def __init__(
        self,
        queue_depths: Callable[[], Iterable[tuple[str, int]]] | None = None,
        in_flight: Callable[[], float] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "zooserve_requests", "Requests by model, endpoint and outcome", ["model", "endpoint", "outcome"], registry=r
        )
        self.request_duration = Histogram(
            "zooserve_request_duration_seconds",
            "Request duration, body read to response ready",
            ["model", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_duration = Histogram(
            "zooserve_queue_duration_seconds",
            "Time a request waited for its batch to start",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.compute_duration = Histogram(
            "zooserve_compute_duration_seconds",
            "Time a batch spent in compute (stacking inputs and the onnxruntime run)",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "zooserve_batch_size", "Rows per executed batch", ["model"], buckets=BATCH_BUCKETS, registry=r
        )
        self.model_ready = Gauge("zooserve_model_ready", "1 when the model is ready", ["model", "version"], registry=r)
        self.in_flight = Gauge("zooserve_requests_in_flight", "HTTP requests being handled", registry=r)
        if in_flight is not None:  # read at scrape time: the hot path counts with a plain int
            self.in_flight.set_function(in_flight)
        if queue_depths is not None:
            r.register(_QueueCollector(queue_depths))
        self._children: dict[tuple, object] = {}

    # Label lookups are cached: the hot path pays a dict lookup, not prometheus_client's label validation.
    def request_counter(self, model: str, endpoint: str, outcome: str):
        key = ("c", model, endpoint, outcome)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(model, endpoint, outcome)
        return child

    def request_histogram(self, model: str, endpoint: str):
        key = ("h", model, endpoint)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.request_duration.labels(model, endpoint)
        return child

    def model_children(self, model: str):
        """(queue, compute, batch size) histograms of one model."""
        key = ("m", model)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.queue_duration.labels(model),
                self.compute_duration.labels(model),
                self.batch_size.labels(model),
            )
        return children

    def render(self) -> bytes:
        return generate_latest(self.registry)
