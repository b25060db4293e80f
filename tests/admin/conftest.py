"""Fixtures for the admin API: a real coordinator with an administrator and a plain user signed in."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.support import RunningCoordinator


@dataclass
class Admin:
    """A running coordinator, an administrator ``ada`` and a plain user ``bob``, both signed in."""

    c: RunningCoordinator
    admin_token: str
    bob_id: int
    bob_token: str


def _admin(c: RunningCoordinator) -> Admin:
    admin_token = c.make_admin("ada")
    bob_id, bob_token = c.signup("bob")
    return Admin(c, admin_token, bob_id, bob_token)


@pytest.fixture
def admin(coordinator: RunningCoordinator) -> Admin:
    """SQLite and PostgreSQL."""
    return _admin(coordinator)


@pytest.fixture
def sqlite_admin(sqlite_coordinator: RunningCoordinator) -> Admin:
    """SQLite only, for tests about transport rather than storage."""
    return _admin(sqlite_coordinator)
