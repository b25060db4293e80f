"""NodeRegistry on both databases with a hand-driven clock: the online window, heartbeats, and a credential
replaced or revoked between authentication and the write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from coordinator.accounts.models import ROLE_ADMIN, ROLE_USER, User
from coordinator.accounts.tokens import Principal
from coordinator.db import Database
from coordinator.errors import InvalidArgument, PermissionDenied, Unauthenticated
from coordinator.nodes.service import ONLINE_TTL_S, NodeHardware, NodeRegistry


class ManualClock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _user(db: Database, username: str, role: str = ROLE_USER) -> Principal:
    with db.write() as s:
        user = User(
            username=username,
            email=f"{username}@example.org",
            password_hash="x",
            role=role,
            created_at=datetime(2030, 1, 1, tzinfo=UTC),
        )
        s.add(user)
        s.flush()
        assert user.id is not None
        return Principal(user.id, username, role)


HW = NodeHardware(hostname="ada-pc", cpu_cores=8, memory_gb=32.0, cpu_score=100.0)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def registry(database: Database, clock: ManualClock) -> NodeRegistry:
    return NodeRegistry(database, clock)


def test_online_follows_the_last_report_within_the_ttl(
    registry: NodeRegistry, database: Database, clock: ManualClock
) -> None:
    ada = _user(database, "ada")
    view, credential = registry.register(ada, HW)  # a Registration unpacks like (node, credential)
    node_id = view.id
    assert registry.get(node_id, ada).online

    clock.advance(ONLINE_TTL_S)
    assert registry.get(node_id, ada).online  # the boundary itself still counts
    clock.advance(1)
    assert not registry.get(node_id, ada).online

    seen = registry.heartbeat(registry.authenticate(credential))
    view = registry.get(node_id, ada)
    assert seen == clock.now and view.last_seen_at == clock.now and view.online

    clock.advance(ONLINE_TTL_S + 1)
    registry.report_status(registry.authenticate(credential), "busy", cpu_usage_percent=12.5)
    view = registry.get(node_id, ada)
    assert view.online and view.status == "busy" and view.cpu_usage_percent == 12.5
    assert [n.id for n in registry.list_for_owner(ada.user_id)] == [node_id]


def test_a_credential_replaced_after_authentication_cannot_write(
    registry: NodeRegistry, database: Database, clock: ManualClock
) -> None:
    ada = _user(database, "ada")
    reg = registry.register(ada, HW)
    node = registry.authenticate(reg.credential)
    registry.register(
        ada, HW, node_id=reg.node.id
    )  # rotates the credential while `node` is in hand
    clock.advance(5)
    with pytest.raises(Unauthenticated):
        registry.report_status(node, "busy")
    with pytest.raises(Unauthenticated):
        registry.heartbeat(node)
    assert registry.get(reg.node.id, ada).status == "registered"

    _, fresh = registry.register(ada, HW, node_id=reg.node.id)
    node = registry.authenticate(fresh)
    registry.revoke(reg.node.id, ada)  # revoked while `node` is in hand
    with pytest.raises(Unauthenticated, match="revoked"):
        registry.report_status(node, "idle")
    with pytest.raises(Unauthenticated, match="revoked"):
        registry.authenticate(fresh)


def test_admin_may_revoke_but_not_re_register_anothers_node(
    registry: NodeRegistry, database: Database
) -> None:
    ada = _user(database, "ada")
    root = _user(database, "root", ROLE_ADMIN)
    reg = registry.register(ada, HW)
    with pytest.raises(PermissionDenied):
        registry.register(
            root, HW, node_id=reg.node.id
        )  # would hand root a credential for ada's node
    assert registry.revoke(reg.node.id, root).revoked


def test_disabled_owner_locks_out_the_node(registry: NodeRegistry, database: Database) -> None:
    ada = _user(database, "ada")
    _, credential = registry.register(ada, HW)
    with database.write() as s:
        user = s.get(User, ada.user_id)
        assert user is not None
        user.disabled = True
        s.add(user)
    with pytest.raises(Unauthenticated, match="disabled"):
        registry.authenticate(credential)


def test_hardware_strings_are_trimmed_and_types_checked(
    registry: NodeRegistry, database: Database
) -> None:
    ada = _user(database, "ada")
    view = registry.register(
        ada, NodeHardware(hostname="  ada-pc \n", cpu_cores=2, memory_gb=4)
    ).node
    assert view.hostname == "ada-pc"
    with pytest.raises(InvalidArgument, match="whole number"):
        registry.register(ada, NodeHardware(hostname="h", cpu_cores=True, memory_gb=4))
    with pytest.raises(InvalidArgument, match="whole number"):
        registry.register(ada, NodeHardware(hostname="h", cpu_cores=2.5, memory_gb=4))  # type: ignore[arg-type]
