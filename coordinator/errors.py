"""Domain errors and the one table mapping them to gRPC status codes and HTTP statuses.

Domain code raises these (or feature subclasses of them) with a sentence a person can act on. The transports
(``coordinator/rpc/errors.py``, ``coordinator/api/errors.py``) look the class up here; nothing else invents codes.
"""

from __future__ import annotations


class HiveMindError(Exception):
    """Base of every error a client may see. ``message`` is shown to the person as it is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(HiveMindError):
    """The request itself is wrong (bad field value); retrying it unchanged will fail again."""


class NotFound(HiveMindError):
    """A named thing (user, node, job) does not exist."""


class AlreadyExists(HiveMindError):
    """The thing to create exists already (e.g. a username)."""


class FailedPrecondition(HiveMindError):
    """The request is well formed but the system's state refuses it (e.g. insufficient funds)."""


class Unauthenticated(HiveMindError):
    """No valid credential: missing, expired, forged or revoked."""


class PermissionDenied(HiveMindError):
    """A valid credential that may not do this (e.g. a non-admin calling an admin operation)."""


class RateLimited(HiveMindError):
    """Too many attempts; ``retry_after_s`` says when to try again."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(HiveMindError):
    """A dependency (database, Redis, Docker) is temporarily unreachable; retrying later may work."""


# error class -> (gRPC status code name, HTTP status). Subclasses resolve through their MRO.
STATUS_TABLE: dict[type[HiveMindError], tuple[str, int]] = {
    InvalidArgument: ("INVALID_ARGUMENT", 400),
    NotFound: ("NOT_FOUND", 404),
    AlreadyExists: ("ALREADY_EXISTS", 409),
    FailedPrecondition: ("FAILED_PRECONDITION", 409),
    Unauthenticated: ("UNAUTHENTICATED", 401),
    PermissionDenied: ("PERMISSION_DENIED", 403),
    RateLimited: ("RESOURCE_EXHAUSTED", 429),
    Unavailable: ("UNAVAILABLE", 503),
    HiveMindError: ("INTERNAL", 500),
}


def status_for(exc: HiveMindError) -> tuple[str, int]:
    """The (gRPC code name, HTTP status) for ``exc``, via the most specific class in the table."""
    for cls in type(exc).__mro__:
        if cls in STATUS_TABLE:
            return STATUS_TABLE[cls]
    return STATUS_TABLE[HiveMindError]
