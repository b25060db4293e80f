"""Whether this computer's Docker engine can run tasks, told as a sentence a volunteer can act on.

No Qt here: the settings view and the worker loop both show :attr:`DockerStatus.message` as is.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

import docker
from docker.errors import DockerException

logger = logging.getLogger(__name__)

_NOT_RUNNING_LINUX = (
    "Docker is not running on this computer. Start it with: sudo systemctl start docker"
)
_NOT_RUNNING_DESKTOP = (
    "Docker is not running on this computer. Start Docker Desktop, then press Retry."
)
_NO_PERMISSION = (
    "Docker is running but this account may not use it. Add yourself to the 'docker' group "
    "(sudo usermod -aG docker $USER), log out and back in, then press Retry."
)
_UNREACHABLE = (
    "Docker did not answer on this computer. Restart Docker (or Docker Desktop), then press Retry."
)


@dataclass(frozen=True)
class DockerStatus:
    """What the UI shows about Docker: ``message`` is always a complete sentence."""

    available: bool
    version: str
    message: str


def describe_docker_error(exc: BaseException, *, platform: str = sys.platform) -> str:
    """Turn a failure to reach the Docker engine into what the person should do about it.

    The SDK wraps the socket error several layers deep (DockerException -> requests ->
    urllib3 -> OSError), so the whole chain's text is searched rather than one type.
    """
    text = _chain_text(exc).lower()
    if "permission denied" in text or "access is denied" in text:
        return _NO_PERMISSION
    not_running_markers = (
        "no such file or directory",
        "connection refused",
        "cannot find the file",  # Windows named pipe absent: Docker Desktop is stopped
        "filenotfounderror",
        "connectionrefusederror",
    )
    if any(marker in text for marker in not_running_markers):
        return _NOT_RUNNING_LINUX if platform.startswith("linux") else _NOT_RUNNING_DESKTOP
    return _UNREACHABLE


def check_docker(client: docker.DockerClient) -> DockerStatus:
    """Ask the engine for its version; any failure becomes an unavailable status with advice."""
    try:
        version = client.version()
    except (DockerException, OSError) as exc:
        logger.info("Docker engine not reachable: %r", exc)
        return DockerStatus(available=False, version="", message=describe_docker_error(exc))
    server_version = str(version.get("Version", "unknown"))
    return DockerStatus(
        available=True,
        version=server_version,
        message=f"Docker {server_version} is running and ready for tasks.",
    )


def _chain_text(exc: BaseException) -> str:
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current!r} {current}")
        current = current.__cause__ or current.__context__
    return " | ".join(parts)
