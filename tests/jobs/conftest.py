"""Fixtures for job tests: a running coordinator seen as the jobs API (REST and gRPC)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import RunningCoordinator


class JobsCoordinator:
    """A running coordinator serving the jobs API over REST and gRPC (``grpc_target``)."""

    def __init__(self, running: RunningCoordinator) -> None:
        self.running = running
        self.grpc_target = running.grpc_target


def _attach(running: RunningCoordinator) -> JobsCoordinator:
    return JobsCoordinator(running)


@pytest.fixture
def jobs_coordinator(coordinator: RunningCoordinator) -> JobsCoordinator:
    """Both databases."""
    return _attach(coordinator)


@pytest.fixture
def sqlite_jobs(sqlite_coordinator: RunningCoordinator) -> JobsCoordinator:
    """SQLite only, for tests about transport rather than storage."""
    return _attach(sqlite_coordinator)


@pytest.fixture
def small_inputs(tmp_path: Path) -> Iterator[JobsCoordinator]:
    """A coordinator that refuses inputs over 1 KiB."""
    with RunningCoordinator.start(
        db_url=f"sqlite:///{tmp_path / 'small.db'}", data_dir=tmp_path, max_input_bytes=1024
    ) as running:
        yield _attach(running)
