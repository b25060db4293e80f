"""Composition root for the running coordinator: builds every collaborator from one Settings object and
serves gRPC and HTTP from one event loop (uvloop or asyncio's, coordinator/eventloop.py)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from grpc_reflection.v1alpha import reflection
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from coordinator import __version__, web
from coordinator.accounts.ratelimit import LoginRateLimiter
from coordinator.accounts.service import Accounts
from coordinator.admin.access import AccessGuard, GuardedTokenIssuer
from coordinator.admin.jobs import JobAdmin
from coordinator.admin.nodes import NodeAdmin
from coordinator.admin.overview import Overview
from coordinator.admin.pricing import Pricing
from coordinator.admin.users import UserAdmin
from coordinator.api import (
    admin_audit,
    admin_jobs,
    admin_ledger,
    admin_nodes,
    admin_pricing,
    admin_users,
    auth,
    jobs,
    nodes,
    overview,
    wallet,
)
from coordinator.api.deps import Services
from coordinator.api.errors import install_error_handlers
from coordinator.clock import Clock, utcnow
from coordinator.db import Database
from coordinator.eventloop import loop_factory
from coordinator.jobs.blobs import BlobStore
from coordinator.metrics import HttpMetricsMiddleware, Metrics
from coordinator.nodes.service import NodeRegistry
from coordinator.rewards.pricing import PriceTable
from coordinator.rpc.common import MetricsInterceptor
from coordinator.rpc.job_servicer import JobServicer
from coordinator.rpc.node_servicer import NodeServicer
from coordinator.rpc.token_servicer import TokenServicer
from coordinator.rpc.user_servicer import UserServicer
from coordinator.rpc.worker_servicer import WorkerServicer
from coordinator.scheduling.liveness import make_liveness
from coordinator.scheduling.service import Dispatcher
from coordinator.scheduling.wake import make_wake
from coordinator.settings import Settings
from shared_proto.v1 import (
    jobs_pb2,
    jobs_pb2_grpc,
    nodes_pb2,
    nodes_pb2_grpc,
    tokens_pb2,
    tokens_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)

logger = logging.getLogger(__name__)

SERVICE_NAMES = (
    users_pb2.DESCRIPTOR.services_by_name["UserService"].full_name,
    tokens_pb2.DESCRIPTOR.services_by_name["TokenService"].full_name,
    nodes_pb2.DESCRIPTOR.services_by_name["NodeManagerService"].full_name,
    jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    worker_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name,
)


def price_table(settings: Settings) -> PriceTable:
    return PriceTable(
        cpu_micro_per_core_second=settings.price_cpu_micro_per_core_second,
        gpu_micro_per_gpu_second=settings.price_gpu_micro_per_gpu_second,
        memory_micro_per_gb_second=settings.price_memory_micro_per_gb_second,
        platform_fee_bps=settings.platform_fee_bps,
        min_task_charge_micro=settings.min_task_charge_micro,
    )


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the coordinator handles SIGTERM for both servers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def build_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="HiveMind coordinator",
        version=__version__,
        description="REST API of the HiveMind volunteer-computing coordinator. Money is integer micro-CPT.",
    )
    app.state.services = services
    app.add_middleware(HttpMetricsMiddleware, metrics=services.metrics)
    install_error_handlers(app)
    for module in (
        auth,
        wallet,
        nodes,
        admin_ledger,
        jobs,
        overview,
        admin_nodes,
        admin_jobs,
        admin_users,
        admin_pricing,
        admin_audit,
    ):
        app.include_router(module.router)
    web.mount(app)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get(
        "/metrics",
        tags=["metrics"],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
    )
    async def metrics() -> Response:
        """Prometheus metrics (no sign-in; see docs/ADMIN.md). Runs on the event loop, where the
        scheduling core whose queue depth it reports lives; the one query runs in the thread pool."""
        services.metrics.nodes_online.set(await run_in_threadpool(services.overview.nodes_online))
        return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


class Coordinator:
    """One coordinator process: database, domain services, a gRPC server and an HTTP server."""

    def __init__(self, settings: Settings, *, clock: Clock = utcnow) -> None:
        self.settings = settings
        self.clock = clock
        self.db = Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
        self.metrics = Metrics()
        self.metrics.watch_ledger(self.db)
        self.guard = AccessGuard()
        self.issuer = GuardedTokenIssuer(
            settings.resolved_jwt_secret(), settings.access_token_ttl_s, clock, self.guard
        )
        self.limiter = LoginRateLimiter(
            per_user=settings.login_max_failures_per_user,
            per_address=settings.login_max_failures_per_address,
            window_s=settings.login_failure_window_s,
            clock=clock,
        )
        self.accounts = Accounts(
            self.db,
            self.issuer,
            self.limiter,
            clock,
            refresh_ttl_s=settings.refresh_token_ttl_s,
            signup_grant_micro=settings.signup_grant_micro,
        )
        self.nodes = NodeRegistry(self.db, clock)
        self.executor = ThreadPoolExecutor(max_workers=settings.db_threads, thread_name_prefix="db")
        self.blobs = BlobStore(settings.data_dir / "blobs", self.db, clock)
        self.pricing = Pricing(self.db, clock, price_table(settings))
        self.dispatcher = Dispatcher(
            self.db,
            self.blobs,
            clock,
            self.executor,
            make_liveness(settings.redis_url),
            make_wake(settings.redis_url),
            prices=self.pricing.current,
            lease_ttl_s=settings.lease_ttl_s,
            heartbeat_interval_s=settings.heartbeat_interval_s,
            node_ttl_s=settings.node_ttl_s,
            max_poll_wait_s=settings.max_poll_wait_s,
            spot_check_rate=settings.spot_check_rate,
            max_extra_replicas=settings.max_extra_replicas,
            max_output_bytes=settings.max_output_bytes,
            default_max_attempts=settings.default_max_attempts,
            replica_wait_s=settings.replica_wait_s,
            metrics=self.metrics,
        )
        self.overview = Overview(self.db, clock)
        self.services = Services(
            settings=settings,
            db=self.db,
            issuer=self.issuer,
            limiter=self.limiter,
            accounts=self.accounts,
            clock=clock,
            nodes=self.nodes,
            dispatcher=self.dispatcher,
            blobs=self.blobs,
            metrics=self.metrics,
            pricing=self.pricing,
            overview=self.overview,
            node_admin=NodeAdmin(self.db, clock),
            user_admin=UserAdmin(self.db, clock, self.guard),
            job_admin=JobAdmin(self.dispatcher, clock),
        )
        self.app = build_app(self.services)
        self.grpc_port = 0
        self.http_port = 0
        self._grpc: grpc.aio.Server | None = None
        self._http: _Uvicorn | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    @property
    def prices(self) -> PriceTable:
        """The price table new submissions are priced by."""
        return self.pricing.current()

    def _build_grpc(self) -> grpc.aio.Server:
        server = grpc.aio.server(
            interceptors=[MetricsInterceptor(self.metrics)],
            options=[
                ("grpc.max_receive_message_length", 8 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
                # Workers send keepalive pings every 60 s; allow them even between calls.
                ("grpc.http2.min_ping_interval_without_data_ms", 30_000),
                ("grpc.keepalive_permit_without_calls", 1),
            ],
        )
        base: dict[str, Any] = {"issuer": self.issuer, "executor": self.executor}
        users_pb2_grpc.add_UserServiceServicer_to_server(
            UserServicer(self.accounts, **base), server
        )
        tokens_pb2_grpc.add_TokenServiceServicer_to_server(
            TokenServicer(self.db, self.clock, **base), server
        )
        nodes_pb2_grpc.add_NodeManagerServiceServicer_to_server(
            NodeServicer(self.nodes, **base), server
        )
        jobs_pb2_grpc.add_JobServiceServicer_to_server(
            JobServicer(self.dispatcher, self.blobs, self.settings.max_input_bytes, **base), server
        )
        worker_pb2_grpc.add_WorkerServiceServicer_to_server(
            WorkerServicer(
                self.nodes, self.dispatcher, self.blobs, self.settings.node_auth_cache_s, **base
            ),
            server,
        )
        health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        reflection.enable_server_reflection(
            (
                *SERVICE_NAMES,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        self._health = health
        return server

    async def start(self) -> None:
        """Migrate the schema, then bind and start both servers (ports 0 pick free ones)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self.db.migrate)
        await loop.run_in_executor(self.executor, self.pricing.load)
        await loop.run_in_executor(self.executor, self.guard.load, self.db)
        await self.dispatcher.start()
        await self.overview.start(lambda fn: loop.run_in_executor(self.executor, fn))
        self._grpc = self._build_grpc()
        self.grpc_port = self._grpc.add_insecure_port(
            f"{self.settings.host}:{self.settings.grpc_port}"
        )
        if self.grpc_port == 0:
            raise OSError(
                f"Cannot listen for gRPC on {self.settings.host}:{self.settings.grpc_port}: is it in use?"
            )
        await self._grpc.start()
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

        config = uvicorn.Config(
            self.app,
            host=self.settings.host,
            port=self.settings.http_port,
            log_config=None,
            lifespan="off",
        )
        self._http = _Uvicorn(config)
        self._http_task = asyncio.create_task(self._http.serve())
        while not self._http.started:
            if self._http_task.done():
                await self._http_task  # re-raise the bind error
                raise OSError(
                    f"Cannot listen for HTTP on {self.settings.host}:{self.settings.http_port}: is it in use?"
                )
            await asyncio.sleep(0.01)
        self.http_port = self._http.servers[0].sockets[0].getsockname()[1]
        logger.info(
            "coordinator started",
            extra={
                "grpc_port": self.grpc_port,
                "http_port": self.http_port,
                "db": self.db.safe_url,
                "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
            },
        )

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop taking new calls, let in-flight ones finish (up to ``grace_s``), then release everything."""
        logger.info("coordinator stopping", extra={"grace_s": grace_s})
        if self._grpc is not None:
            await self._health.enter_graceful_shutdown()
            await self._grpc.stop(grace_s)
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            await self._http_task
        await self.overview.stop()
        await self.dispatcher.stop()
        self.executor.shutdown(wait=True)
        self.db.dispose()
        self._stopped.set()
        logger.info("coordinator stopped")

    async def run_until_signalled(self) -> None:
        """Serve until SIGTERM or SIGINT, then shut down cleanly."""
        await self.start()
        tune_garbage_collector(self.settings.gc_young_threshold)
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_requested.set)
        await stop_requested.wait()
        await self.stop()


def tune_garbage_collector(young_threshold: int) -> None:
    """Make Python's cyclic garbage collector cheap for a long-running server process.

    With Python's defaults a young collection runs after every 700 new container objects, and every tenth
    of those walks the middle generation too. Under load the coordinator allocates a few thousand objects per
    request (protobufs, dataclasses, ORM rows), so those collections ran hundreds of times a second and cost
    about a tenth of its CPU in the dispatch bench, mostly walking objects that their request would free a
    moment later anyway. Collecting after ``young_threshold`` new objects lets most of them die by reference
    counting first. The objects that exist once the servers are up (modules, the schema, the app) are
    frozen, so that the rare full collections no longer walk them; what startup left as garbage (the
    migration's cycles, say) is collected first, as frozen objects are never collected. The older
    generations are collected a little less often too: every 20th young collection (Python: 10th) and every
    100th of those (10th). ``young_threshold`` 0 leaves the collector as it is. Only the ``hivemind
    coordinator`` process calls this: in-process coordinators (the tests, the demo) share their interpreter
    with other code."""
    if young_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_threshold, 20, 100)


class BackgroundCoordinator:
    """Runs a :class:`Coordinator` on its own event loop in a daemon thread, for the demo, benchmarks and
    tests: ``with BackgroundCoordinator(settings) as c: ...`` (``c.grpc_port``, ``c.http_port``)."""

    def __init__(self, settings: Settings, *, clock: Clock = utcnow) -> None:
        self.coordinator = Coordinator(settings, clock=clock)
        _, new_loop = loop_factory(settings.event_loop)
        self._loop = new_loop()
        self._thread = threading.Thread(target=self._run, name="coordinator", daemon=True)
        self._started = threading.Event()
        self._failure: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.coordinator.start())
        except BaseException as exc:  # handed to the starting thread
            self._failure = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    def start(self, timeout_s: float = 60) -> Coordinator:
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise TimeoutError(f"the coordinator did not start within {timeout_s:.0f} s")
        if self._failure is not None:
            raise self._failure
        return self.coordinator

    def stop(self, grace_s: float = 1.0) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.coordinator.stop(grace_s), self._loop).result(60)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(60)
        self._loop.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the coordinator runs on (its thread's)."""
        return self._loop

    def __enter__(self) -> Coordinator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
