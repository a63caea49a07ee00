"""Prometheus metrics, in a registry of their own per app (no process-global state):

zooserve_requests_total{model,endpoint,outcome}       outcome: success | client_error | server_error | rejected
zooserve_request_duration_seconds{model,endpoint}     whole request, body read to response ready
zooserve_queue_duration_seconds{model}                per request: waiting for its batch to start
zooserve_compute_duration_seconds{model}              per batch: stacking inputs + onnxruntime run
zooserve_batch_size{model}                            rows per executed batch
zooserve_model_ready{model,version}                   1 ready, 0 not
zooserve_requests_in_flight                           infer, classify, load and unload requests being handled
zooserve_queue_size{model}                            requests waiting (at scrape time)

The per-request and per-batch ones (the first five) are written from the event loop only, which is the
only thread that handles requests and finishes batches, so they are plain counts with no lock
(`LoopHistogram`), turned into Prometheus families at scrape time. prometheus_client's own Counter
and Histogram take a lock per sample: measured in process on lenet5_digits JSON requests, the three
observations each request made through them cost 7 of the event loop's 50 us.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class LoopHistogram:
    """A Prometheus histogram for one thread (the event loop): `observe` finds the bucket by bisection and
    adds; `buckets()` gives the cumulative counts by upper bound ("le"), +Inf last."""

    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: beyond every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self._bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, int]]:
        out, total = [], 0
        for bound, count in zip((*self._bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append((floatToGoString(bound), total))
        return out


class _LoopCollector:
    """Exports the Metrics' loop-thread counts and histograms at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self):
        m = self._m
        requests = CounterMetricFamily(
            "zooserve_requests", "Requests by model, endpoint and outcome", labels=["model", "endpoint", "outcome"]
        )
        for labels, count in list(m.requests.items()):
            requests.add_metric(labels, count)
        yield requests
        durations = HistogramMetricFamily(
            "zooserve_request_duration_seconds",
            "Request duration, body read to response ready",
            labels=["model", "endpoint"],
        )
        for labels, h in list(m.request_durations.items()):
            durations.add_metric(labels, h.buckets(), h.sum)
        yield durations
        families = (
            ("zooserve_queue_duration_seconds", "Time a request waited for its batch to start"),
            ("zooserve_compute_duration_seconds", "Time a batch spent stacking inputs and in the onnxruntime run"),
            ("zooserve_batch_size", "Rows per executed batch"),
        )
        models = list(m.model_metrics.items())
        for i, (name, documentation) in enumerate(families):
            family = HistogramMetricFamily(name, documentation, labels=["model"])
            for model, histograms in models:
                family.add_metric([model], histograms[i].buckets(), histograms[i].sum)
            yield family


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
        self.requests: dict[tuple[str, str, str], int] = {}
        """Requests by (model, endpoint, outcome)."""
        self.request_durations: dict[tuple[str, str], LoopHistogram] = {}
        """By (model, endpoint)."""
        self.model_metrics: dict[str, tuple[LoopHistogram, LoopHistogram, LoopHistogram]] = {}
        """By model: its (queue duration, compute duration, batch size) histograms."""
        r.register(_LoopCollector(self))
        self.model_ready = Gauge("zooserve_model_ready", "1 when the model is ready", ["model", "version"], registry=r)
        self.in_flight = Gauge(
            "zooserve_requests_in_flight", "Infer, classify, load and unload requests being handled", registry=r
        )
        if in_flight is not None:  # read at scrape time: the hot path counts with a plain int
            self.in_flight.set_function(in_flight)
        if queue_depths is not None:
            r.register(_QueueCollector(queue_depths))

    # From the event loop only (see the module's notes).
    def request_done(self, model: str, endpoint: str, outcome: str, seconds: float) -> None:
        key = (model, endpoint, outcome)
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.request_durations.get((model, endpoint))
        if histogram is None:
            histogram = self.request_durations[(model, endpoint)] = LoopHistogram(LATENCY_BUCKETS)
        histogram.observe(seconds)

    def model_histograms(self, model: str) -> tuple[LoopHistogram, LoopHistogram, LoopHistogram]:
        """(queue duration, compute duration, batch size) of one model."""
        histograms = self.model_metrics.get(model)
        if histograms is None:
            histograms = self.model_metrics[model] = (
                LoopHistogram(LATENCY_BUCKETS),
                LoopHistogram(LATENCY_BUCKETS),
                LoopHistogram(BATCH_BUCKETS),
            )
        return histograms

    def render(self) -> bytes:
        return generate_latest(self.registry)
