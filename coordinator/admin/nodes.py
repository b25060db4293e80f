"""Administrators' view of the node pool and their actions on nodes: quarantine, release, revoke.

A quarantined node gets no new leases (the scheduling core refuses its polls); leases it already holds may
finish and are verified and paid as usual. Release lifts the quarantine and restarts the node's streak, so it
is cross-checked again until it earns trust; its lifetime counts stay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from coordinator.accounts.models import User
from coordinator.accounts.tokens import Principal
from coordinator.admin import audit
from coordinator.admin.models import AuditEntry
from coordinator.clock import Clock
from coordinator.db import Database
from coordinator.errors import FailedPrecondition, InvalidArgument, NotFound
from coordinator.jobs.models import LEASE_ACTIVE, Lease, Task
from coordinator.nodes.models import NODE_STATUSES, Node
from coordinator.nodes.service import NODE_ID_LENGTH, ONLINE_TTL_S, NodeView, view
from coordinator.verification.core import TRUST_STREAK, TrustState

MAX_REASON = 500
RECENT_RESULTS = 20
STATUS_FILTERS = ("online", "offline", *[s for s in NODE_STATUSES if s != "offline"])


@dataclass(frozen=True, slots=True)
class AdminNode:
    node: NodeView
    owner: str
    quarantined: bool
    quarantine_reason: str
    valid_streak: int
    valid_results: int
    invalid_results: int
    active_leases: int
    trust_revision: int

    @property
    def trusted(self) -> bool:
        return self.valid_streak >= TRUST_STREAK and not self.quarantined

    @property
    def trust(self) -> TrustState:
        return TrustState(
            self.valid_streak,
            self.valid_results,
            self.invalid_results,
            self.quarantined,
            self.trust_revision,
        )


@dataclass(frozen=True, slots=True)
class LeaseLine:
    lease_id: str
    job_id: str
    task_id: str
    task_index: int
    state: str
    status: str
    created_at: datetime
    deadline: datetime
    reported_at: datetime | None
    charged_micro: int
    paid_micro: int
    reason: str


@dataclass(frozen=True, slots=True)
class NodeDetail:
    node: AdminNode
    earnings_micro: int
    current_leases: list[LeaseLine]
    recent_results: list[LeaseLine]
    history: list[AuditEntry]


def online_condition(now: datetime) -> Any:
    """SQL for coordinator.nodes.service.is_online."""
    return (
        col(Node.credential_revoked_at).is_(None)
        & (col(Node.status) != "offline")
        & (col(Node.last_seen_at) >= now - timedelta(seconds=ONLINE_TTL_S))
    )


def _admin_nodes(session: Session, rows: list[tuple[Node, str]], now: datetime) -> list[AdminNode]:
    ids = [n.id for n, _ in rows]
    active = dict(
        session.exec(
            select(Lease.node_id, func.count())
            .where(col(Lease.node_id).in_(ids), Lease.state == LEASE_ACTIVE)
            .group_by(col(Lease.node_id))
        ).all()
    )
    return [
        AdminNode(
            node=view(n, now),
            owner=owner,
            quarantined=n.quarantined,
            quarantine_reason=n.quarantine_reason,
            valid_streak=n.valid_streak,
            valid_results=n.valid_results,
            invalid_results=n.invalid_results,
            active_leases=int(active.get(n.id, 0)),
            trust_revision=n.trust_revision,
        )
        for n, owner in rows
    ]


def list_nodes(
    db: Database,
    now: datetime,
    *,
    status: str = "",
    owner: str = "",
    quarantined: bool | None = None,
    gpu: bool | None = None,
    min_trust: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[AdminNode], int]:
    """Every node, oldest registration first, filtered."""
    audit.check_page(limit, offset)
    conditions: list[Any] = []
    if status == "online":
        conditions.append(online_condition(now))
    elif status == "offline":
        conditions.append(~online_condition(now) | col(Node.last_seen_at).is_(None))
    elif status in STATUS_FILTERS:
        conditions.append(col(Node.status) == status)
    elif status:
        raise InvalidArgument(
            f"Unknown node status {status[:20]!r}. Use one of: {', '.join(STATUS_FILTERS)}."
        )
    if owner:
        conditions.append(col(User.username) == owner[:64])
    if quarantined is not None:
        conditions.append(col(Node.quarantined).is_(quarantined))
    if gpu is not None:
        has_gpu = (col(Node.gpu_memory_gb) > 0) | (col(Node.gpu_name) != "")
        conditions.append(has_gpu if gpu else ~has_gpu)
    if min_trust is not None:
        if min_trust < 0:
            raise InvalidArgument("min_trust is a streak of agreeing results: 0 or more.")
        conditions.append(col(Node.valid_streak) >= min_trust)
    base = select(Node, User.username).join(User, col(User.id) == col(Node.owner_id))
    with db.read() as session:
        total = session.exec(
            select(func.count())
            .select_from(Node)
            .join(User, col(User.id) == col(Node.owner_id))
            .where(*conditions)
        ).one()
        rows = session.exec(
            base.where(*conditions)
            .order_by(col(Node.registered_at), col(Node.id))
            .offset(offset)
            .limit(limit)
        ).all()
        return _admin_nodes(session, [(n, str(u)) for n, u in rows], now), int(total)


def _lease_lines(session: Session, query: Any) -> list[LeaseLine]:
    rows = session.exec(query).all()
    return [
        LeaseLine(
            lease_id=lease.id,
            job_id=lease.job_id,
            task_id=lease.task_id,
            task_index=int(index),
            state=lease.state,
            status=lease.status,
            created_at=lease.created_at,
            deadline=lease.deadline,
            reported_at=lease.reported_at,
            charged_micro=lease.charged_micro,
            paid_micro=lease.paid_micro,
            reason=lease.reason,
        )
        for lease, index in rows
    ]


def _get(session: Session, node_id: str, *, lock: bool = False) -> Node:
    node = None
    if 0 < len(node_id) <= NODE_ID_LENGTH:
        query = select(Node).where(Node.id == node_id)
        node = session.exec(query.with_for_update() if lock else query).first()
    if node is None:
        raise NotFound(f"There is no node with id '{node_id[:NODE_ID_LENGTH]}'. Check the id.")
    return node


def node_detail(db: Database, node_id: str, now: datetime) -> NodeDetail:
    with db.read() as session:
        node = _get(session, node_id)
        owner = session.get(User, node.owner_id)
        (admin_node,) = _admin_nodes(session, [(node, owner.username if owner else "?")], now)
        earnings = session.exec(
            select(func.coalesce(func.sum(Lease.paid_micro), 0)).where(Lease.node_id == node.id)
        ).one()
        with_index = select(Lease, Task.index).join(Task, col(Task.id) == col(Lease.task_id))
        current = _lease_lines(
            session,
            with_index.where(Lease.node_id == node.id, Lease.state == LEASE_ACTIVE).order_by(
                col(Lease.created_at)
            ),
        )
        recent = _lease_lines(
            session,
            with_index.where(Lease.node_id == node.id, Lease.state != LEASE_ACTIVE)
            .order_by(col(Lease.created_at).desc(), col(Lease.id))
            .limit(RECENT_RESULTS),
        )
        history = list(
            session.exec(
                select(AuditEntry)
                .where(AuditEntry.target == f"node:{node.id}")
                .order_by(col(AuditEntry.id).desc())
                .limit(50)
            )
        )
    return NodeDetail(admin_node, int(earnings), current, recent, history)


class NodeAdmin:
    """Quarantine, release and revoke. Blocking; the transport tells the dispatcher about trust changes."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def _one(self, session: Session, node: Node, now: datetime) -> AdminNode:
        owner = session.get(User, node.owner_id)
        return _admin_nodes(session, [(node, owner.username if owner else "?")], now)[0]

    def quarantine(self, actor: Principal, node_id: str, reason: str) -> AdminNode:
        reason = (reason or "").strip()
        if not reason or len(reason) > MAX_REASON or not reason.isprintable():
            raise InvalidArgument(
                f"Give the reason for the quarantine: 1 to {MAX_REASON} printable characters."
            )
        now = self.clock()
        with self.db.write() as session:
            audit.require_admin(session, actor)
            node = _get(session, node_id, lock=True)
            if node.quarantined:
                raise FailedPrecondition(
                    f"Node {node.hostname} is already quarantined ({node.quarantine_reason})."
                )
            node.quarantined = True
            node.quarantine_reason = f"By {actor.username}: {reason}"[:MAX_REASON]
            node.trust_revision += 1
            session.add(node)
            audit.record(
                session,
                actor,
                "node.quarantine",
                f"node:{node.id}",
                now=now,
                summary=f"Quarantined node {node.hostname}: {reason}",
                detail={"reason": reason, "hostname": node.hostname, "owner_id": node.owner_id},
            )
            session.flush()
            return self._one(session, node, now)

    def release(self, actor: Principal, node_id: str) -> AdminNode:
        now = self.clock()
        with self.db.write() as session:
            audit.require_admin(session, actor)
            node = _get(session, node_id, lock=True)
            if not node.quarantined:
                raise FailedPrecondition(f"Node {node.hostname} is not quarantined.")
            previous = node.quarantine_reason
            node.quarantined = False
            node.quarantine_reason = ""
            node.valid_streak = 0  # trust is earned again: its results are cross-checked
            node.trust_revision += 1
            session.add(node)
            audit.record(
                session,
                actor,
                "node.release",
                f"node:{node.id}",
                now=now,
                summary=f"Released node {node.hostname} from quarantine.",
                detail={"previous_reason": previous, "hostname": node.hostname},
            )
            session.flush()
            return self._one(session, node, now)

    def revoke(self, actor: Principal, node_id: str) -> AdminNode:
        now = self.clock()
        with self.db.write() as session:
            audit.require_admin(session, actor)
            node = _get(session, node_id, lock=True)
            if node.credential_revoked_at is not None:
                raise FailedPrecondition(
                    f"The credential of node {node.hostname} is already revoked."
                )
            node.credential_revoked_at = now
            node.status = "offline"
            session.add(node)
            audit.record(
                session,
                actor,
                "node.revoke",
                f"node:{node.id}",
                now=now,
                summary=f"Revoked the credential of node {node.hostname}.",
                detail={"hostname": node.hostname, "owner_id": node.owner_id},
            )
            session.flush()
            return self._one(session, node, now)
