"""Fixtures for the worker engine's tests: a real Docker engine and a DockerExecutor on a temp dir.

Only the Docker fixtures skip, and only when the engine cannot be reached (CI always has one).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import DockerException, ImageNotFound

from client_gui.engine.executor import DockerExecutor

BUSYBOX = "hivemind/busybox:latest"
TASK_LABEL = "hivemind.task"


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(version="auto")
        client.info()
    except (DockerException, OSError) as exc:
        pytest.skip(
            f"Docker engine not reachable ('docker info' fails: {exc}); "
            "start it with: bash scripts/services.sh start docker"
        )
    try:
        client.images.get(BUSYBOX)
    except ImageNotFound:
        pytest.fail(f"{BUSYBOX} is missing: build it with `bash scripts/build_images.sh`")
    yield client
    client.close()


def task_containers(client: docker.DockerClient, work_root: Path) -> list[str]:
    """Ids of the containers (running or not) whose work dir lies under ``work_root``.

    Filtering on the work root keeps other test sessions' containers on the same engine out;
    one list call (no per-container inspect) so their comings and goings cannot race it.
    """
    found = []
    for container in client.api.containers(all=True, filters={"label": TASK_LABEL}):
        sources = [Path(m.get("Source", "")) for m in container.get("Mounts") or []]
        if any(source.is_relative_to(work_root) for source in sources):
            found.append(str(container["Id"]))
    return found


@pytest.fixture
def work_root(tmp_path: Path) -> Path:
    return tmp_path / "worker"


@pytest.fixture
def executor(docker_client: docker.DockerClient, work_root: Path) -> Iterator[DockerExecutor]:
    """An executor on a fresh work root; afterwards no task container and no work dir may remain."""
    yield DockerExecutor(work_root, client=docker_client)
    assert task_containers(docker_client, work_root) == [], "a task container was left behind"
    tasks_dir = work_root / "tasks"
    leftovers = list(tasks_dir.iterdir()) if tasks_dir.exists() else []
    assert leftovers == [], "a task work dir was left behind"
