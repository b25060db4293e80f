"""Prometheus metrics of one coordinator: one registry per :class:`Metrics` (several coordinators may run in
one process, as the tests do), served at ``/metrics``. docs/ADMIN.md lists the families with PromQL examples.

Hot paths only touch in-memory counters. Gauges that describe the whole system are computed at scrape:
queue depth from the scheduling core, nodes online with one query per scrape.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, event
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coordinator.db import Database
from coordinator.ledger.service import POSTED_KINDS

VERIFICATION_OUTCOMES = ("agreed", "disagreed", "quarantined")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
DISPATCH_BUCKETS = (
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
    1800,
    3600,
    4 * 3600,
)


class _QueueDepth(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "hivemind_queue_depth",
            "Replicas waiting for a node, by job priority.",
            labels=["priority"],
        )
        source = self.metrics.queue_depth_source
        for priority, depth in sorted((source() if source else {}).items()):
            family.add_metric([str(priority)], depth)
        yield family


class Metrics:
    """Every metric family of one coordinator, registered in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # Set by the dispatcher: priority -> queued replicas. Read at scrape, on the event loop thread.
        self.queue_depth_source: Callable[[], dict[int, int]] | None = None
        r.register(_QueueDepth(self))
        self.leases_granted = Counter(
            "hivemind_leases_granted", "Leases granted to workers.", registry=r
        )
        self.leases_expired = Counter(
            "hivemind_leases_expired",
            "Leases taken back because their heartbeats stopped.",
            registry=r,
        )
        self.submit_to_lease = Histogram(
            "hivemind_submit_to_lease_seconds",
            "From a task entering the queue (submission, release by its dependencies, requeue) to its "
            "first lease.",
            buckets=DISPATCH_BUCKETS,
            registry=r,
        )
        self.nodes_online = Gauge(
            "hivemind_nodes_online",
            "Nodes heard from within the online window, not revoked, not reported offline.",
            registry=r,
        )
        self.heartbeats = Counter(
            "hivemind_heartbeats",
            "Worker heartbeats (WorkerService.Heartbeat); rate() gives heartbeats per second.",
            registry=r,
        )
        self.ledger_transactions = Counter(
            "hivemind_ledger_transactions",
            "Ledger transactions committed, by kind.",
            ["kind"],
            registry=r,
        )
        self.verification_outcomes = Counter(
            "hivemind_verification_outcomes",
            "Replica results judged by the verifier (agreed, disagreed) and nodes it quarantined.",
            ["outcome"],
            registry=r,
        )
        for outcome in VERIFICATION_OUTCOMES:
            self.verification_outcomes.labels(outcome)
        self.grpc_requests = Counter(
            "hivemind_grpc_requests",
            "gRPC calls handled, by full method name and status code.",
            ["method", "code"],
            registry=r,
        )
        self.grpc_latency = Histogram(
            "hivemind_grpc_request_duration_seconds",
            "gRPC call duration by method (a long-poll or a followed stream lasts as long as it waits).",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_requests = Counter(
            "hivemind_http_requests",
            "HTTP requests handled, by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "hivemind_http_request_duration_seconds",
            "HTTP request duration by method and route template (a streamed response until it ends).",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    # -- the ledger --------------------------------------------------------------------------------------
    def watch_ledger(self, db: Database) -> None:
        """Count the ledger transactions committed through ``db``'s engines, by kind (see
        ``coordinator.ledger.service.POSTED_KINDS``): begin opens a list, commit counts it, rollback drops it."""
        engines: list[Engine] = [db.engine]
        write_engine = getattr(db, "_write_engine", db.engine)
        if write_engine is not db.engine:
            engines.append(write_engine)
        for engine in engines:
            event.listen(engine, "begin", _open_posted)
            event.listen(engine, "commit", self._count_posted)
            event.listen(engine, "rollback", _drop_posted)

    def _count_posted(self, conn: Any) -> None:
        kinds: list[str] | None = conn.info.pop(POSTED_KINDS, None)
        for kind in kinds or ():
            self.ledger_transactions.labels(kind).inc()


def _open_posted(conn: Any) -> None:
    conn.info[POSTED_KINDS] = []


def _drop_posted(conn: Any) -> None:
    conn.info.pop(POSTED_KINDS, None)


class HttpMetricsMiddleware:
    """Pure ASGI middleware: counts requests and times them by route template (``/api/v1/jobs/{job_id}``,
    never the raw path, so the label set stays small). Requests no route matched count as ``[unmatched]``;
    the panel's static files as ``/static``."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = _route_template(scope)
            method = str(scope.get("method", ""))
            self.metrics.http_requests.labels(method, route, str(status)).inc()
            self.metrics.http_latency.labels(method, route).observe(time.perf_counter() - start)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str) and path:
        return path
    root = scope.get("root_path", "")
    app_root = scope.get("app_root_path", "")
    if isinstance(root, str) and root and root != app_root:  # inside a Mount (the panel's /static)
        return root.removeprefix(app_root) or root
    return "[unmatched]"
