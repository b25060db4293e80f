"""The event loop the coordinator runs on: uvloop where it is installed, else asyncio's own.

Everything the coordinator serves passes through one event loop: gRPC's completion callbacks, every
RPC's coroutine, the group commits of the ledger and of the dispatcher, the HTTP server. On the 2-core
benchmark machine that loop is the busiest thread, and uvloop (libuv, in C) runs the same coroutines
with less of the loop's own Python work per call: in interleaved ledger benchmark runs, 14 % more
transfers per second at 8 clients and 12 % less coordinator CPU per transfer (docs/PERFORMANCE.md).
Nothing in the coordinator depends on which loop it is; ``--event-loop asyncio`` (or
``HIVEMIND_EVENT_LOOP=asyncio``) chooses the standard one, and the test suite runs on both.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from typing import Literal

LoopChoice = Literal["auto", "uvloop", "asyncio"]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class EventLoopUnavailable(RuntimeError):
    """The chosen event loop cannot be had here; the message says what to do."""


def loop_factory(choice: LoopChoice) -> tuple[str, LoopFactory]:
    """The name of the loop ``choice`` resolves to here, and a function making a new one.

    ``auto`` is uvloop when it can be imported (it is a dependency on Linux and macOS; it does not exist
    for Windows) and asyncio's default loop otherwise. ``uvloop`` insists on it."""
    if choice == "asyncio":
        return "asyncio", asyncio.new_event_loop
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError as exc:
        if choice == "uvloop":
            raise EventLoopUnavailable(
                "The uvloop event loop was asked for (--event-loop uvloop) but uvloop is not installed: "
                "install it with 'pip install uvloop' (it exists for Linux and macOS), or choose "
                "--event-loop asyncio."
            ) from exc
        return "asyncio", asyncio.new_event_loop
    new_loop: LoopFactory = uvloop.new_event_loop
    return "uvloop", new_loop
