"""Idempotency keys for calls that move money or hold a budget, kept across a person's retries.

When the answer to such a call is lost (the network dropped, the coordinator timed out or failed inside),
the call may still have been carried out. Pressing the button again with the same details must then repeat
the same request, under the same key, so the coordinator answers with the first result instead of paying
or submitting twice. A refusal, or a success, ends the request: the next press is a new one.
"""

from __future__ import annotations

import uuid

from client_gui.engine.coordinator_client import CoordinatorError, CoordinatorUnreachable


def outcome_unknown(exc: Exception) -> bool:
    """Whether a failed call may have been carried out anyway: its answer was lost (no answer, a
    deadline, a fault inside the coordinator), rather than refused. Failures here (a file that cannot
    be read, a form that does not parse) happen before anything is sent."""
    return isinstance(exc, CoordinatorUnreachable) or type(exc) is CoordinatorError


class RetryKey:
    """The idempotency key of the request a person is making: the same while they retry the same
    request after a lost answer, a new one for any other request."""

    def __init__(self) -> None:
        self._request: object = None
        self._key = ""

    def key_for(self, request: object) -> str:
        if not self._key or request != self._request:
            self._request, self._key = request, uuid.uuid4().hex
        return self._key

    def settle(self, exc: Exception | None = None) -> bool:
        """Record how the call ended; returns whether its outcome is unknown (the key is then kept)."""
        unknown = exc is not None and outcome_unknown(exc)
        if not unknown:
            self._request, self._key = None, ""
        return unknown
