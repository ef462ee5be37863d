"""Prometheus metrics shared by every service."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

CONSUMED = Counter(
    "baton_consumer_messages_total",
    "Kafka messages handled by the consumer loop, by outcome, counted once their offsets "
    "are committed.",
    ["topic", "outcome"],
)
CONSUMER_BATCH_SECONDS = Histogram(
    "baton_consumer_batch_seconds",
    "Time from fetching a batch to committing its offsets.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OUTBOX_PUBLISHED = Counter(
    "baton_outbox_published_total", "Events the outbox relay published.", ["topic"]
)
OUTBOX_BATCH_ROWS = Histogram(
    "baton_outbox_relay_batch_rows",
    "Rows of each outbox relay batch that published any (its count: batches published).",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500),
)
OUTBOX_RELAY_ERRORS = Counter(
    "baton_outbox_relay_errors_total", "Outbox relay batches that failed and will be retried."
)
HTTP_REQUESTS = Histogram(
    "baton_http_request_seconds",
    "HTTP request latency by route and status.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
