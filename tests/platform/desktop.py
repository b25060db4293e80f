"""Real desktop servers for the platform tests, each on an address it picks itself: an Xvfb X server and
a private D-Bus session bus."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable

import pytest

START_TIMEOUT_S = 20


def _read_line(fd: int) -> str:
    """One line from a pipe the server writes when it is ready (blocking; the server is local)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 256)
        if not chunk:
            break
        data += chunk
    return data.decode().strip()


def start_reporting(argv: Callable[[int], list[str]]) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``argv(fd)``, a server that writes one line to ``fd`` once it is ready (its display number
    or bus address, picked by itself so that parallel runs never collide); returns it and that line."""
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        argv(write_end), pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    os.close(write_end)
    try:
        line = _read_line(read_end)
    finally:
        os.close(read_end)
    if not line:
        stop(server)
        pytest.fail(f"{argv(0)[0]} did not say where it listens")
    return server, line


def start_xvfb(*extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """An Xvfb X server (``extra``: more options); returns it and its display, e.g. ``":3"``."""
    if shutil.which("Xvfb") is None:
        pytest.skip(
            "Xvfb is not installed (apt-get install xvfb); the X11 idle source needs an X server"
        )
    server, number = start_reporting(
        lambda fd: [
            "Xvfb",
            "-displayfd",
            str(fd),
            "-nolisten",
            "tcp",
            "-screen",
            "0",
            "320x240x24",
            *extra,
        ]
    )
    return server, f":{number}"


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
