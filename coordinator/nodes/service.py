"""Node registry use cases shared by gRPC and REST: register a worker node, authenticate its credential,
record its status and liveness, and let its owner (or an admin) list, inspect and revoke it.

Liveness: a node is *online* while the coordinator has heard from it (ReportStatus, or HealthCheck with its
credential) within the last :data:`ONLINE_TTL_S` seconds, its credential is not revoked, and it has not
reported itself ``offline``. Workers should therefore report at least every ``ONLINE_TTL_S / 3`` seconds.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Table, update
from sqlalchemy import bindparam as sa_bindparam
from sqlalchemy import select as sa_select
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session, col, select

from coordinator.accounts.models import User
from coordinator.accounts.tokens import Principal, hash_secret, new_secret
from coordinator.clock import Clock
from coordinator.db import Database
from coordinator.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from coordinator.nodes.models import Node
from coordinator.rawsql import RawStatement, padded

ONLINE_TTL_S = 60
"""Seconds after the last report or heartbeat during which a node counts as online."""

CREDENTIAL_PREFIX = "hmn"
REPORTABLE_STATUSES = ("idle", "busy", "paused", "offline")

MAX_HOSTNAME = 255
MAX_LOCATION = 128
MAX_GPU_NAME = 128
MAX_STATUS_MESSAGE = 500
MAX_CPU_CORES = 4096
MAX_MEMORY_GB = 65536.0
MAX_CREDENTIAL = 128  # far above a real one (~47 characters); refuses junk before hashing it
NODE_ID_LENGTH = 36  # a uuid4 in its canonical text form

REVOKED = "This node's credential was revoked. Register the node again from the HiveMind app."
UNKNOWN_CREDENTIAL = (
    "This node credential is not valid. Register the node again from the HiveMind app."
)
NOT_A_NODE_CREDENTIAL = (
    "This call needs the node credential that RegisterWorkerNode returned "
    "(authorization: Bearer hmn_...), not a user access token."
)

_NODES: Table = Node.__table__  # type: ignore[attr-defined]
_USERS: Table = User.__table__  # type: ignore[attr-defined]
_NODE_COLUMNS = tuple(c.key for c in _NODES.columns)
_NODE_BY_CREDENTIAL = RawStatement(
    sa_select(*_NODES.columns, _USERS.c.disabled)
    .join(_USERS, _USERS.c.id == _NODES.c.owner_id)
    .where(_NODES.c.credential_hash == sa_bindparam("credential_hash"))
)
_NODES_BY_CREDENTIAL = RawStatement(
    sa_select(*_NODES.columns, _USERS.c.disabled)
    .join(_USERS, _USERS.c.id == _NODES.c.owner_id)
    .where(_NODES.c.credential_hash.in_(sa_bindparam("credential_hashes", expanding=True)))
)
# Credentials per statement in authenticate_many.
_CREDENTIALS_PER_READ = 512


@dataclass(frozen=True, slots=True)
class NodeHardware:
    """What the worker measured about its machine, as sent in RegisterWorkerNode."""

    hostname: str
    cpu_cores: int
    memory_gb: float
    cpu_score: float = 0.0
    gpu_score: float = 0.0
    gpu_memory_gb: float = 0.0
    location: str = ""
    port: int = 0
    gpu_name: str = ""
    docker_status: bool = False


@dataclass(frozen=True, slots=True)
class NodeView:
    """A node as its owner or an admin sees it: everything but the credential hash, plus ``online``."""

    id: str
    owner_id: int
    hostname: str
    cpu_cores: int
    memory_gb: float
    cpu_score: float
    gpu_score: float
    gpu_memory_gb: float
    location: str
    port: int
    gpu_name: str
    docker_status: bool
    status: str
    status_message: str
    cpu_usage_percent: float
    memory_usage_percent: float
    gpu_usage_percent: float
    registered_at: datetime
    last_seen_at: datetime | None
    revoked_at: datetime | None
    online: bool

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class Registration(NamedTuple):
    """The result of RegisterWorkerNode. ``credential`` is the only copy of the secret: show it once."""

    node: NodeView
    credential: str


def is_online(node: Node, now: datetime) -> bool:
    """See the module docstring for what online means."""
    return (
        node.credential_revoked_at is None
        and node.status != "offline"
        and node.last_seen_at is not None
        and now - node.last_seen_at <= timedelta(seconds=ONLINE_TTL_S)
    )


def view(node: Node, now: datetime) -> NodeView:
    return NodeView(
        id=node.id,
        owner_id=node.owner_id,
        hostname=node.hostname,
        cpu_cores=node.cpu_cores,
        memory_gb=node.memory_gb,
        cpu_score=node.cpu_score,
        gpu_score=node.gpu_score,
        gpu_memory_gb=node.gpu_memory_gb,
        location=node.location,
        port=node.port,
        gpu_name=node.gpu_name,
        docker_status=node.docker_status,
        status=node.status,
        status_message=node.status_message,
        cpu_usage_percent=node.cpu_usage_percent,
        memory_usage_percent=node.memory_usage_percent,
        gpu_usage_percent=node.gpu_usage_percent,
        registered_at=node.registered_at,
        last_seen_at=node.last_seen_at,
        revoked_at=node.credential_revoked_at,
        online=is_online(node, now),
    )


def _text(name: str, value: str, *, max_len: int, required: bool = False) -> str:
    value = (value or "").strip()
    if required and not value:
        raise InvalidArgument(
            f"The {name} is empty. Give the computer's name (1 to {max_len} characters)."
        )
    if len(value) > max_len:
        raise InvalidArgument(
            f"The {name} is {len(value)} characters long; the limit is {max_len}."
        )
    if not value.isprintable():
        raise InvalidArgument(f"The {name} contains control characters. Use plain printable text.")
    return value


def _number(
    name: str, value: float, *, low: float, high: float = math.inf, low_open: bool = False
) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise InvalidArgument(
            f"The {name} must be a finite number, not {value}. Run the benchmark again."
        )
    if value < low or (low_open and value == low) or value > high:
        lower = f"greater than {low:g}" if low_open else f"at least {low:g}"
        upper = f" and at most {high:g}" if math.isfinite(high) else ""
        raise InvalidArgument(f"The {name} must be {lower}{upper}; got {value:g}.")
    return value


def _integer(name: str, value: int, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgument(
            f"The {name} must be a whole number from {low} to {high}; got {value!r}."
        )
    return value


def validate_hardware(hw: NodeHardware) -> dict[str, Any]:
    """The node's hardware columns, checked and normalized; InvalidArgument names the first bad field."""
    return {
        "hostname": _text("hostname", hw.hostname, max_len=MAX_HOSTNAME, required=True),
        "cpu_cores": _integer("number of CPU cores", hw.cpu_cores, low=1, high=MAX_CPU_CORES),
        "memory_gb": _number(
            "memory size (GB)", hw.memory_gb, low=0.0, high=MAX_MEMORY_GB, low_open=True
        ),
        "cpu_score": _number("CPU score", hw.cpu_score, low=0.0),
        "gpu_score": _number("GPU score", hw.gpu_score, low=0.0),
        "gpu_memory_gb": _number(
            "GPU memory size (GB)", hw.gpu_memory_gb, low=0.0, high=MAX_MEMORY_GB
        ),
        "location": _text("location", hw.location, max_len=MAX_LOCATION),
        "port": _integer("port", hw.port, low=0, high=65535),
        "gpu_name": _text("GPU name", hw.gpu_name, max_len=MAX_GPU_NAME),
        "docker_status": bool(hw.docker_status),
    }


def _percent(name: str, value: float) -> float:
    return _number(f"{name} usage percentage", value, low=0.0, high=100.0)


class NodeRegistry:
    """Node use cases. Collaborators are injected; every method is blocking (run it off the event loop)."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    # -- the worker's side ---------------------------------------------------------------------------------

    def register(
        self, owner: Principal, fields: NodeHardware, *, node_id: str | None = None
    ) -> Registration:
        """Bind a new node to ``owner``, or re-register ``node_id`` (same owner only): hardware is updated,
        the credential is rotated (the old one stops working) and a revocation is lifted."""
        columns = validate_hardware(fields)
        credential = new_secret(CREDENTIAL_PREFIX)
        credential_hash = hash_secret(credential)
        now = self.clock()
        with self.db.write() as session:
            if node_id:
                node = self._owned(self._lock(session, node_id), node_id, owner, admin_may=False)
                for key, value in columns.items():
                    setattr(node, key, value)
                node.credential_hash = credential_hash
                node.credential_revoked_at = None
                node.status = "registered"
                node.status_message = ""
                node.last_seen_at = now
            else:
                node = Node(
                    id=str(uuid.uuid4()),
                    owner_id=owner.user_id,
                    credential_hash=credential_hash,
                    registered_at=now,
                    last_seen_at=now,
                    **columns,
                )
            session.add(node)
        return Registration(view(node, now), credential)

    def authenticate(self, credential: str) -> Node:
        """The node that ``credential`` belongs to; Unauthenticated if it is unknown or revoked."""
        malformed = _malformed(credential)
        if malformed is not None:
            raise malformed
        with self.db.read() as session:
            rows = _NODE_BY_CREDENTIAL.rows(
                session.connection(), {"credential_hash": hash_secret(credential)}
            )
        checked = _node_of(rows[0] if rows else None)
        if isinstance(checked, Unauthenticated):
            raise checked
        return checked

    def authenticate_many(self, credentials: Sequence[str]) -> dict[str, Node | Unauthenticated]:
        """:meth:`authenticate` for many credentials in one read (a statement per 512): each credential's
        node, or the refusal it gets."""
        answers: dict[str, Node | Unauthenticated] = {}
        by_hash: dict[str, str] = {}
        for credential in credentials:
            malformed = _malformed(credential)
            if malformed is not None:
                answers[credential] = malformed
            else:
                by_hash[hash_secret(credential)] = credential
        rows: dict[str, Any] = {}
        if by_hash:
            hashes = sorted(by_hash)
            with self.db.read() as session:
                conn = session.connection()
                for i in range(0, len(hashes), _CREDENTIALS_PER_READ):
                    chunk = padded(hashes[i : i + _CREDENTIALS_PER_READ])
                    for row in _NODES_BY_CREDENTIAL.rows(conn, {"credential_hashes": chunk}):
                        rows[row.credential_hash] = row
        for credential_hash, credential in by_hash.items():
            answers[credential] = _node_of(rows.get(credential_hash))
        return answers

    def report_status(
        self,
        node: Node,
        status: str,
        *,
        cpu_usage_percent: float = 0.0,
        memory_usage_percent: float = 0.0,
        gpu_usage_percent: float = 0.0,
        message: str = "",
        node_id: str = "",
    ) -> str:
        """Record an authenticated node's status and usage; also counts as a heartbeat. Returns the status."""
        if node_id and node_id != node.id:
            raise PermissionDenied(
                "The node id in the request is not the node this credential belongs to. "
                "Send the node id that RegisterWorkerNode returned with this credential."
            )
        if status not in REPORTABLE_STATUSES:
            raise InvalidArgument(
                f"Unknown node status {status[:32]!r}. Report one of: {', '.join(REPORTABLE_STATUSES)}."
            )
        values = {
            "status": status,
            "cpu_usage_percent": _percent("CPU", cpu_usage_percent),
            "memory_usage_percent": _percent("memory", memory_usage_percent),
            "gpu_usage_percent": _percent("GPU", gpu_usage_percent),
            "status_message": _text("status message", message, max_len=MAX_STATUS_MESSAGE),
        }
        self._touch(node, **values)
        return status

    def heartbeat(self, node: Node) -> datetime:
        """Record that an authenticated node is alive (HealthCheck). Returns the time recorded."""
        return self._touch(node)

    def _touch(self, node: Node, **values: Any) -> datetime:
        # One UPDATE, guarded by the credential: a revocation or re-registration that landed after
        # authenticate() makes it match no row, so a stale credential cannot write.
        now = self.clock()
        with self.db.write() as session:
            result = session.execute(
                update(Node)
                .where(
                    col(Node.id) == node.id,
                    col(Node.credential_hash) == node.credential_hash,
                    col(Node.credential_revoked_at).is_(None),
                )
                .values(last_seen_at=now, **values)
            )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise Unauthenticated(
                "This node's credential was revoked or replaced by a newer registration. "
                "Register the node again from the HiveMind app."
            )
        return now

    # -- the owner's side ----------------------------------------------------------------------------------

    def list_for_owner(self, user_id: int) -> list[NodeView]:
        """The user's nodes, oldest registration first."""
        with self.db.read() as session:
            nodes = session.exec(
                select(Node)
                .where(Node.owner_id == user_id)
                .order_by(col(Node.registered_at), col(Node.id))
            ).all()
        now = self.clock()
        return [view(node, now) for node in nodes]

    def get(self, node_id: str, principal: Principal) -> NodeView:
        """One node, for its owner or an admin."""
        with self.db.read() as session:
            found = session.get(Node, node_id) if _plausible_id(node_id) else None
        return view(self._owned(found, node_id, principal), self.clock())

    def revoke(self, node_id: str, principal: Principal) -> NodeView:
        """Revoke the node's credential (owner or admin). Idempotent: revoking twice keeps the first time."""
        now = self.clock()
        with self.db.write() as session:
            node = self._owned(self._lock(session, node_id), node_id, principal)
            if node.credential_revoked_at is None:
                node.credential_revoked_at = now
                node.status = "offline"
                session.add(node)
        return view(node, now)

    @staticmethod
    def _lock(session: Session, node_id: str) -> Node | None:
        """The node row, locked for this write transaction on PostgreSQL (SQLite's write lock covers it)."""
        if not _plausible_id(node_id):
            return None
        return session.exec(select(Node).where(Node.id == node_id).with_for_update()).first()

    @staticmethod
    def _owned(
        node: Node | None, node_id: str, principal: Principal, *, admin_may: bool = True
    ) -> Node:
        if node is None:
            raise NotFound(
                f"There is no node with id '{node_id[:NODE_ID_LENGTH]}'. Check the id in your node list, "
                "or register without a node id to add the computer as a new node."
            )
        if node.owner_id != principal.user_id and not (admin_may and principal.is_admin):
            raise PermissionDenied(
                "That node belongs to another account. Sign in as its owner"
                + (
                    " or as an admin."
                    if admin_may
                    else ", or register without a node id to add it as a new node."
                )
            )
        return node


def _plausible_id(node_id: str) -> bool:
    return 0 < len(node_id) <= NODE_ID_LENGTH


def _malformed(credential: str) -> Unauthenticated | None:
    """The refusal of a credential that cannot be a node's, before any read (junk is not even hashed)."""
    if not credential.startswith(CREDENTIAL_PREFIX + "_"):
        return Unauthenticated(NOT_A_NODE_CREDENTIAL)
    if len(credential) > MAX_CREDENTIAL:
        return Unauthenticated(UNKNOWN_CREDENTIAL)
    return None


def _node_of(row: Any) -> Node | Unauthenticated:
    """The node of a credential's row (its columns, then whether its owner is disabled), or the refusal a
    missing row, a revoked credential or a disabled owner gets. Every worker call is authenticated (cached
    for seconds per credential), so this is a plain row; the Node is built from it and marked
    persistent-but-detached, as a loaded one is."""
    if row is None:
        return Unauthenticated(UNKNOWN_CREDENTIAL)
    *columns, owner_disabled = row
    node = Node(**dict(zip(_NODE_COLUMNS, columns, strict=True)))
    make_transient_to_detached(node)
    if node.credential_revoked_at is not None:
        return Unauthenticated(REVOKED)
    if owner_disabled:
        return Unauthenticated(
            "The account that owns this node is disabled. Contact the coordinator's operator."
        )
    return node
