"""Prometheus metrics of one service instance, in a registry of its own (two apps in one process never mix)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Paths reported as themselves; anything else is counted as "other" so that scanners cannot grow the label set.
KNOWN_PATHS = ("/v1/embeddings", "/v1/translate", "/v1/models", "/health", "/metrics", "/docs", "/openapi.json")
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def path_label(path: str) -> str:
    return path if path in KNOWN_PATHS else "other"


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("vecbridge_requests", "HTTP requests answered", ["method", "path", "status"],
                                registry=r)
        self.latency = Histogram("vecbridge_request_seconds", "time from request start to the last response byte",
                                 ["path"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("vecbridge_requests_in_flight", "requests being answered", ["path"], registry=r)
        self.queue_depth = Gauge("vecbridge_queue_depth", "requests waiting for a batch worker", registry=r)
        self.batch_requests = Histogram("vecbridge_batch_requests", "requests served by one batch", ["kind"],
                                        buckets=BATCH_BUCKETS, registry=r)
        self.embedded = Counter("vecbridge_vectors_embedded", "texts embedded", ["model"], registry=r)
        self.translated = Counter("vecbridge_vectors_translated", "vectors translated", ["translator"], registry=r)
        self.rejected = Counter("vecbridge_rejected", "requests refused before any model work", ["reason"],
                                registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
