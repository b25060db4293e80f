"""Facts about this computer that the worker reports: name, CPU, memory, and whether Docker can be used.

Each function is cheap (well under a second) and never raises for a missing or broken component: it
reports what it found and, for Docker, a sentence a person can act on (see :mod:`.docker_status`).
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from client_gui.engine.docker_status import DockerStatus

logger = logging.getLogger(__name__)

GIB = 1024**3
DOCKER_TIMEOUT_S = 5


@dataclass(frozen=True)
class CpuInfo:
    """The processor: its marketing name and how many cores the OS schedules on."""

    model: str
    logical_cores: int
    physical_cores: int | None


@dataclass(frozen=True)
class MemoryInfo:
    """Installed and currently available RAM, in GiB."""

    total_gb: float
    available_gb: float


def hostname() -> str:
    """The computer's network name, as the coordinator will list it."""
    return socket.gethostname()


def cpu_model() -> str:
    """The CPU's name, e.g. ``"AMD EPYC 7B13"``; ``platform.processor()`` or ``"unknown CPU"`` elsewhere."""
    system = platform.system()
    try:
        if system == "Linux":
            for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
                key, _, value = line.partition(":")
                # "model name" on x86; "Hardware"/"Model" on some ARM boards.
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
        elif system == "Darwin":
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            )
            if out.stdout.strip():
                return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        logger.debug("Could not read the CPU model", exc_info=True)
    return platform.processor() or "unknown CPU"


def cpu_info() -> CpuInfo:
    """The CPU model and core counts."""
    return CpuInfo(
        model=cpu_model(),
        logical_cores=psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        physical_cores=psutil.cpu_count(logical=False),
    )


def memory_info() -> MemoryInfo:
    """Installed and available memory right now."""
    memory = psutil.virtual_memory()
    return MemoryInfo(
        total_gb=round(memory.total / GIB, 2), available_gb=round(memory.available / GIB, 2)
    )


def docker_status() -> DockerStatus:
    """Ask the Docker engine (as ``DOCKER_HOST`` or the platform's default names it) whether it runs."""
    # Imported here so the benchmark's spawned processes, which import this module, skip the docker SDK.
    import docker

    from client_gui.engine.docker_status import DockerStatus, check_docker, describe_docker_error

    try:
        client = docker.from_env(timeout=DOCKER_TIMEOUT_S)
    except (docker.errors.DockerException, OSError) as exc:  # the SDK asks for the API version here
        logger.info("Docker engine not reachable: %r", exc)
        return DockerStatus(available=False, version="", message=describe_docker_error(exc))
    try:
        return check_docker(client)
    finally:
        client.close()
