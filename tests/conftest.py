"""Shared fixtures: real databases (SQLite file, and PostgreSQL when HIVEMIND_TEST_PG_URL is set) and a real
coordinator serving gRPC and HTTP on free loopback ports in a background thread."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.db import Database
from tests.support import RunningCoordinator, fresh_schema

PG_URL = os.environ.get("HIVEMIND_TEST_PG_URL", "")
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL with an empty schema: a fresh SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'coordinator.db'}"
        return
    if not PG_URL:
        pytest.skip("PostgreSQL not configured: set HIVEMIND_TEST_PG_URL (.ci/run always does)")
    with fresh_schema(PG_URL) as url:
        yield url


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    """A migrated Database on each backend."""
    db = Database(db_url)
    db.migrate()
    yield db
    db.dispose()


@pytest.fixture
def coordinator(db_url: str, tmp_path: Path) -> Iterator[RunningCoordinator]:
    """A real coordinator (gRPC + HTTP on free ports) on each backend."""
    with RunningCoordinator.start(db_url=db_url, data_dir=tmp_path) as running:
        yield running


@pytest.fixture
def sqlite_coordinator(tmp_path: Path) -> Iterator[RunningCoordinator]:
    """A real coordinator on SQLite only, for tests about transport rather than storage."""
    with RunningCoordinator.start(
        db_url=f"sqlite:///{tmp_path / 'c.db'}", data_dir=tmp_path
    ) as running:
        yield running
