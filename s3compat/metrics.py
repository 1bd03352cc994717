"""Prometheus metrics, served by the gateway at `/-/metrics` (a path no bucket can have).

Why prometheus_client: it is the reference client, its text exposition is what every
scraper reads, and its counters and histograms are thread- and asyncio-safe without our
own locking. One registry per process; `render()` is the scrape.

Names follow Prometheus conventions, and operations are labelled with AWS action names.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

REQUESTS = Counter(
    "s3compat_requests_total",
    "S3 requests answered, by operation (AWS action name) and HTTP status",
    ["operation", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "s3compat_request_duration_seconds",
    "Time to answer an S3 request (to the response headers for streamed bodies)",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
BYTES_IN = Counter(
    "s3compat_bytes_received_total",
    "Request body bytes received, by operation",
    ["operation"],
    registry=REGISTRY,
)
BYTES_OUT = Counter(
    "s3compat_bytes_sent_total",
    "Response body bytes sent, by operation",
    ["operation"],
    registry=REGISTRY,
)
# The AWS action the current task serves: set by the gateway for each request, inherited by
# the tasks the request starts. Work outside any request (janitor, reloads) is "background".
OPERATION: ContextVar[str] = ContextVar("s3compat_operation", default="background")
DB_STATEMENTS = Counter(
    "s3compat_db_statements_total",
    "Statements sent to PostgreSQL, each one round trip (BEGIN and COMMIT included), by the "
    "operation they served",
    ["operation"],
    registry=REGISTRY,
)


def count_statement(_query: Any) -> None:
    """asyncpg query logger: called (in the caller's context) after every statement."""
    DB_STATEMENTS.labels(OPERATION.get()).inc()


DEGRADED_READS = Counter(
    "s3compat_degraded_reads_total",
    "Segments rebuilt from parity because a data fragment was missing, corrupt or slow",
    registry=REGISTRY,
)
FRAGMENT_FAILURES = Counter(
    "s3compat_fragment_failures_total",
    "Fragment reads that failed (node error, deadline, bad checksum), by node",
    ["node"],
    registry=REGISTRY,
)
HEDGED_READS = Counter(
    "s3compat_hedged_reads_total",
    "Extra fragment reads started because a node was slower than the hedge delay",
    registry=REGISTRY,
)
CHUNKS_LOST_ON_WRITE = Counter(
    "s3compat_write_chunks_lost_total",
    "Chunks a write committed without (its node failed; queued for repair)",
    registry=REGISTRY,
)
REPAIRS = Counter(
    "s3compat_chunks_repaired_total",
    "Chunks rebuilt or re-verified by the repairer",
    registry=REGISTRY,
)
REPAIR_FAILURES = Counter(
    "s3compat_chunk_repairs_failed_total",
    "Chunk repairs that could not be done (too few good fragments, node down)",
    registry=REGISTRY,
)
JANITOR = Counter(
    "s3compat_janitor_total",
    "Janitor work: blobs collected, chunks deleted or deferred, writes and uploads aborted",
    ["work"],
    registry=REGISTRY,
)
JANITOR_PASSES = Gauge(
    "s3compat_janitor_last_pass_timestamp_seconds",
    "When the janitor last finished a pass",
    registry=REGISTRY,
)

# Circuit breaker states as numbers: 0 closed, 1 half-open, 2 open.
BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}


class _BreakerCollector(Collector):
    """Reads the breakers' state at scrape time from whatever the gateway registered."""

    def __init__(self) -> None:
        self.source: Callable[[], dict[str, str]] | None = None

    def collect(self):  # type: ignore[no-untyped-def]
        family = GaugeMetricFamily(
            "s3compat_node_breaker_state",
            "Circuit breaker of each storage node: 0 closed, 1 half-open, 2 open",
            labels=["node"],
        )
        for node, state in sorted((self.source() if self.source else {}).items()):
            family.add_metric([node], BREAKER_STATES.get(state, -1))
        yield family


BREAKERS = _BreakerCollector()
REGISTRY.register(BREAKERS)


def render() -> bytes:
    out: bytes = generate_latest(REGISTRY)
    return out
