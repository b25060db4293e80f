"""Test helpers: run a real coordinator in a background thread, and talk to it like a client would."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from coordinator.server import BackgroundCoordinator
from coordinator.settings import Settings
from shared_proto.v1 import (
    nodes_pb2,
    nodes_pb2_grpc,
    tokens_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
    worker_pb2_grpc,
)

TEST_JWT_SECRET = "test-secret-" + "x" * 40
PASSWORD = "correct horse battery"


def pg_schema_url(base_url: str, schema: str) -> str:
    """``base_url`` with every connection's search_path set to ``schema``."""
    sep = "&" if "?" in base_url else "?"
    return f"{base_url}{sep}options={quote(f'-csearch_path={schema}')}"


@contextmanager
def fresh_schema(url: str, prefix: str = "t_") -> Iterator[str]:
    """``url`` itself for SQLite; for PostgreSQL, ``url`` pointed at a new, empty schema of its own,
    dropped with everything in it on the way out, so that no test or run meets another's rows."""
    if make_url(url).get_backend_name() != "postgresql":
        yield url
        return
    schema = f"{prefix}{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield pg_schema_url(url, schema)
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


class RunningCoordinator:
    """A real coordinator on free loopback ports, with ready-made gRPC stubs and an HTTP client."""

    def __init__(self, background: BackgroundCoordinator) -> None:
        self.background = background
        self.coordinator = background.coordinator
        self.channel = grpc.insecure_channel(self.grpc_target)
        self.users = users_pb2_grpc.UserServiceStub(self.channel)
        self.tokens = tokens_pb2_grpc.TokenServiceStub(self.channel)
        self.nodes = nodes_pb2_grpc.NodeManagerServiceStub(self.channel)
        self.http = httpx.Client(base_url=self.http_base, timeout=30)

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.coordinator.grpc_port}"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.coordinator.http_port}"

    @classmethod
    @contextmanager
    def start(
        cls, *, db_url: str, data_dir: Path, **overrides: Any
    ) -> Iterator[RunningCoordinator]:
        settings = Settings(
            db=db_url,
            data_dir=data_dir,
            grpc_port=0,
            http_port=0,
            jwt_secret=TEST_JWT_SECRET,
            log_format="text",
            **overrides,
        )
        background = BackgroundCoordinator(settings)
        background.start()
        running = cls(background)
        try:
            yield running
        finally:
            running.channel.close()
            running.http.close()
            background.stop()

    # -- client conveniences -------------------------------------------------------------------------
    def register(self, username: str, password: str = PASSWORD, email: str | None = None) -> int:
        reply = self.users.Register(
            users_pb2.RegisterRequest(
                username=username, password=password, email=email or f"{username}@example.org"
            )
        )
        return int(reply.user_id)

    def login(self, username: str, password: str = PASSWORD) -> users_pb2.LoginResponse:
        return self.users.Login(users_pb2.LoginRequest(username=username, password=password))

    def signup(self, username: str) -> tuple[int, str]:
        """Register and sign in; returns (user id, access token)."""
        user_id = self.register(username)
        return user_id, self.login(username).token

    def make_admin(self, username: str) -> str:
        """Create an admin through the same path as ``hivemind coordinator create-admin``; returns a token."""
        self.coordinator.accounts.create_admin(username, f"{username}@example.org", PASSWORD)
        return self.login(username).token


def auth(token: str) -> tuple[tuple[str, str], ...]:
    """gRPC call metadata carrying an access token."""
    return (("authorization", f"Bearer {token}"),)


def bearer(token: str) -> dict[str, str]:
    """HTTP headers carrying an access token."""
    return {"Authorization": f"Bearer {token}"}


def grpc_worker(
    c: RunningCoordinator, owner: str
) -> tuple[worker_pb2_grpc.WorkerServiceStub, tuple[tuple[str, str], ...]]:
    """A new user ``owner`` registers an 8-core node; its WorkerService stub and credential metadata."""
    _, token = c.signup(owner)
    reply = c.nodes.RegisterWorkerNode(
        nodes_pb2.RegisterWorkerNodeRequest(
            hostname=f"{owner}-pc", cpu_cores=8, memory_gb=16.0, cpu_score=800.0, docker_status=True
        ),
        metadata=auth(token),
    )
    return worker_pb2_grpc.WorkerServiceStub(c.channel), auth(reply.node_credential)
