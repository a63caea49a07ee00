"""The service's lock-free metrics export exactly what prometheus_client's own Counter and Histogram would
for the same observations."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.metrics import BATCH_BUCKETS, LATENCY_BUCKETS, Metrics


def _samples(text: bytes, family: str) -> dict:
    """{(sample name, labels): value} of one family, without prometheus_client's *_created samples."""
    for f in text_string_to_metric_families(text.decode()):
        if f.name == family:
            return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in f.samples if "_created" not in s.name}
    raise KeyError(family)


def test_counts_and_histograms_match_prometheus_client():
    rng = np.random.default_rng(0)
    durations = [*rng.exponential(0.05, 300), *LATENCY_BUCKETS, 0.0, 30.0]  # the bounds themselves included
    rows = [*rng.integers(1, 300, 200), *BATCH_BUCKETS]

    ours = Metrics()
    reference = CollectorRegistry()
    counter = Counter("zooserve_requests", "", ["model", "endpoint", "outcome"], registry=reference)
    request_h = Histogram(
        "zooserve_request_duration_seconds", "", ["model", "endpoint"], buckets=LATENCY_BUCKETS, registry=reference
    )
    queue_h = Histogram("zooserve_queue_duration_seconds", "", ["model"], buckets=LATENCY_BUCKETS, registry=reference)
    batch_h = Histogram("zooserve_batch_size", "", ["model"], buckets=BATCH_BUCKETS, registry=reference)
    for i, d in enumerate(durations):
        model, outcome = ("a", "success") if i % 3 else ("b", "client_error")
        ours.request_done(model, "infer", outcome, float(d))
        counter.labels(model, "infer", outcome).inc()
        request_h.labels(model, "infer").observe(float(d))
        ours.model_histograms(model)[0].observe(float(d))
        queue_h.labels(model).observe(float(d))
        batch_h.labels(model)  # a model's histograms all exist once it is used, empty or not
    for r in rows:
        ours.model_histograms("a")[2].observe(int(r))
        batch_h.labels("a").observe(int(r))

    got, want = ours.render(), generate_latest(reference)
    for family in (
        "zooserve_requests",
        "zooserve_request_duration_seconds",
        "zooserve_queue_duration_seconds",
        "zooserve_batch_size",
    ):
        g, w = _samples(got, family), _samples(want, family)
        assert g.keys() == w.keys(), family
        assert g == pytest.approx(w, rel=1e-12), family
    assert ours.requests[("a", "infer", "success")] == sum(1 for i in range(len(durations)) if i % 3)
