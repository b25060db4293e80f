"""What the Earnings, Wallet and Submit tests add to tests/ui/conftest.py: real volunteer computers (real
Docker) to run a job, a wait that keeps the Qt event loop turning, and reading a table cell."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QTableWidget

from client_gui.engine.local import local_worker
from client_gui.engine.worker import WorkerLimits
from client_gui.ui.context import AppContext
from tests.support import PASSWORD, RunningCoordinator
from tests.ui.conftest import make_person


@contextmanager
def volunteers(c: RunningCoordinator, names: list[str], home: Path) -> Iterator[None]:
    """Real workers owned by new users ``names``. A new node's result is cross-checked on a second
    node before its task is accepted and paid, so a job needs two computers (the app's engine may be
    one of them)."""
    started = []
    try:
        for name in names:
            make_person(c, name, grant_cpt=0)
            worker = local_worker(
                c.grpc_target,
                name,
                PASSWORD,
                home / name,
                limits=WorkerLimits(use_gpu=False, slots=1),
                heartbeat_interval_s=1.0,
                poll_wait_s=1.0,
            )
            worker.start()
            started.append(worker)
        yield
    finally:
        for worker in started:
            worker.stop(cancel_running=True, timeout=30)
            worker.client.close()


def cell(table: QTableWidget, row: int, column: int) -> str:
    """The text in a table cell (fails the test when the cell is empty)."""
    item = table.item(row, column)
    assert item is not None, f"no item at row {row}, column {column}"
    return str(item.text())


def settle(
    qtbot: Any, context: AppContext, check: Callable[[], Any], timeout_s: float = 30
) -> None:
    """Turn the event loop until ``check()`` holds, then until no background call is left."""
    qtbot.waitUntil(lambda: bool(check()), timeout=int(timeout_s * 1000))
    context.background.wait_idle(timeout_s)
