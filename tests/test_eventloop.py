"""Which event loop the coordinator serves on: uvloop by default where it is installed, asyncio's on request
or where uvloop is missing, and a clear refusal when uvloop is demanded but absent."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.eventloop import EventLoopUnavailable, loop_factory
from coordinator.settings import Settings

HIVEMIND = [sys.executable, "-m", "coordinator"]


def _made_by(choice: str) -> tuple[str, str]:
    name, new_loop = loop_factory(choice)  # type: ignore[arg-type]
    loop = new_loop()
    try:
        return name, type(loop).__module__.split(".")[0]
    finally:
        loop.close()


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop does not exist for Windows")
def test_auto_is_uvloop_where_installed_and_asyncio_on_request() -> None:
    assert _made_by("auto") == ("uvloop", "uvloop")  # a dependency on Linux: the CI machine has it
    assert _made_by("uvloop") == ("uvloop", "uvloop")
    assert _made_by("asyncio") == ("asyncio", "asyncio")
    assert Settings().event_loop == "auto"


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(
        sys.modules, "uvloop", None
    )  # what `import uvloop` meets where it is absent
    assert _made_by("auto") == ("asyncio", "asyncio")
    with pytest.raises(EventLoopUnavailable, match=r"pip install uvloop.*--event-loop asyncio"):
        loop_factory("uvloop")


def test_the_setting_reaches_a_running_coordinator(tmp_path: Path) -> None:
    from coordinator.server import BackgroundCoordinator

    async def running_loop() -> str:
        return type(asyncio.get_running_loop()).__module__.split(".")[0]

    for choice in ("asyncio", "auto"):
        settings = Settings(
            data_dir=tmp_path, grpc_port=0, http_port=0, event_loop=choice, log_format="text"
        )
        background = BackgroundCoordinator(settings)
        background.start()
        try:
            served_on = asyncio.run_coroutine_threadsafe(running_loop(), background.loop)
            assert served_on.result(10) == ("asyncio" if choice == "asyncio" else "uvloop")
        finally:
            background.stop()


def test_cli_refuses_a_missing_uvloop_with_a_clear_message(tmp_path: Path) -> None:
    """The real command, in a Python where ``import uvloop`` fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    blocker = tmp_path / "no_uvloop"
    blocker.mkdir()
    (blocker / "uvloop.py").write_text("raise ImportError('uvloop is not installed here')\n")
    env["PYTHONPATH"] = os.pathsep.join([str(blocker), env.get("PYTHONPATH", "")])
    r = subprocess.run(
        [*HIVEMIND, "coordinator", "--event-loop", "uvloop", "--data-dir", str(tmp_path),
         "--grpc-port", "0", "--http-port", "0"],
        capture_output=True, text=True, env=env, timeout=60, cwd=Path(__file__).parents[1],
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "uvloop is not installed" in r.stderr and "--event-loop asyncio" in r.stderr
