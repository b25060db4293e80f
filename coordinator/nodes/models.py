"""The node registry table. Hardware figures are what the worker measured and reported."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

NODE_STATUSES = ("registered", "idle", "busy", "paused", "offline")


class Node(SQLModel, table=True):
    __tablename__ = "nodes"

    id: str = Field(primary_key=True, max_length=36)
    owner_id: int = Field(foreign_key="users.id", index=True)
    hostname: str = Field(max_length=255)
    cpu_cores: int
    memory_gb: float
    cpu_score: float
    gpu_score: float
    gpu_memory_gb: float
    location: str = Field(default="", max_length=128)
    port: int = 0
    gpu_name: str = Field(default="", max_length=128)
    docker_status: bool = False
    status: str = Field(default="registered", max_length=16)
    status_message: str = Field(default="", max_length=500)
    cpu_usage_percent: float = 0.0
    memory_usage_percent: float = 0.0
    gpu_usage_percent: float = 0.0
    # sha256 of the node credential; the secret itself is shown to the worker once.
    credential_hash: str = Field(max_length=64, unique=True)
    credential_revoked_at: datetime | None = None
    registered_at: datetime
    last_seen_at: datetime | None = None
    # Trust (BOINC-style adaptive replication, see coordinator/verification): a streak of results that
    # agreed with the quorum makes a node trusted; disagreement resets it and repeat offenders are quarantined.
    valid_streak: int = 0
    valid_results: int = 0
    invalid_results: int = 0
    quarantined: bool = False
    quarantine_reason: str = Field(default="", max_length=500)
    # One more at every write of the four trust columns above (a verification's, an administrator's), under the
    # row's lock: of two copies of a node's trust, the one with the higher revision is the newer.
    trust_revision: int = 0
