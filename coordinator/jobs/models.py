"""Tables for jobs, their tasks and leases (one lease = one replica run on one node), blobs and logs.

A job holds a spec and an escrow account. It becomes N tasks (N > 1 for arrays). Each task is run as one or
more leases on distinct nodes of distinct owners; the verifier accepts a task when ``quorum`` lease results
agree. Everything a worker reports lands on its lease; what the submitter sees is the task's accepted result.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

# Job states
JOB_WAITING = "waiting"  # dependencies not finished
JOB_QUEUED = "queued"
JOB_RUNNING = "running"
JOB_COMPLETED = "completed"
JOB_FAILED = "failed"
JOB_CANCELLED = "cancelled"
JOB_FINAL = frozenset({JOB_COMPLETED, JOB_FAILED, JOB_CANCELLED})

# Task states
TASK_WAITING = "waiting"
TASK_QUEUED = "queued"
TASK_RUNNING = "running"
TASK_ACCEPTED = "accepted"
TASK_FAILED = "failed"
TASK_CANCELLED = "cancelled"
TASK_FINAL = frozenset({TASK_ACCEPTED, TASK_FAILED, TASK_CANCELLED})

# Lease states
LEASE_ACTIVE = "active"
LEASE_REPORTED = "reported"  # result stored, waiting for the quorum
LEASE_VALID = "valid"  # agreed with the accepted result: paid
LEASE_INVALID = "invalid"  # disagreed: not paid
LEASE_FAILED = "failed"  # the run failed on the node (error, crash): counts as an attempt
LEASE_EXPIRED = "expired"
LEASE_CANCELLED = "cancelled"


class Blob(SQLModel, table=True):
    """A content-addressed file (inputs, outputs, stdout). The bytes live in the blob store on disk."""

    __tablename__ = "blobs"

    sha256: str = Field(primary_key=True, max_length=64)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime


class Job(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("owner_id", "idempotency_key"),
        Index("ix_jobs_owner_id_created_at", "owner_id", "created_at"),
    )

    id: str = Field(primary_key=True, max_length=36)
    owner_id: int = Field(foreign_key="users.id")
    name: str = Field(default="", max_length=128)
    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    state: str = Field(default=JOB_QUEUED, max_length=16, index=True)
    priority: int = 0
    task_count: int = 1
    tasks_done: int = 0
    tasks_failed: int = 0
    replicas: int = 1
    quorum: int = 1
    escrow_account_id: int | None = Field(default=None, foreign_key="ledger_accounts.id")
    escrow_micro: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    charged_micro: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    refunded_micro: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    # The price table in force when the job was submitted (a later change applies to later jobs).
    prices: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    idempotency_key: str | None = Field(default=None, max_length=128)
    failure_reason: str = Field(default="", max_length=500)
    created_at: datetime
    finished_at: datetime | None = None


class JobDependency(SQLModel, table=True):
    __tablename__ = "job_dependencies"

    job_id: str = Field(foreign_key="jobs.id", primary_key=True, max_length=36)
    parent_id: str = Field(foreign_key="jobs.id", primary_key=True, max_length=36, index=True)


class Task(SQLModel, table=True):
    __tablename__ = "tasks"
    __table_args__ = (UniqueConstraint("job_id", "index"), Index("ix_tasks_state", "state"))

    id: str = Field(primary_key=True, max_length=36)
    job_id: str = Field(foreign_key="jobs.id", max_length=36)
    index: int = 0
    # This task's own env/args on top of the job spec (array members).
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    state: str = Field(default=TASK_QUEUED, max_length=16)
    attempts: int = 0
    # Replicas this task needs before the verifier can decide; raised by adaptive replication.
    replicas_needed: int = 1
    quorum: int = 1
    result_hash: str | None = Field(default=None, max_length=64)
    exit_code: int | None = None
    stdout_sha256: str | None = Field(default=None, max_length=64)
    outputs: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    charged_micro: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    failure_reason: str = Field(default="", max_length=500)
    created_at: datetime
    finished_at: datetime | None = None


class Lease(SQLModel, table=True):
    """One replica run of a task on one node."""

    __tablename__ = "leases"
    __table_args__ = (
        Index("ix_leases_node_id_state", "node_id", "state"),
        Index("ix_leases_task_id", "task_id"),
        Index("ix_leases_job_id_state", "job_id", "state"),
    )

    id: str = Field(primary_key=True, max_length=36)
    task_id: str = Field(foreign_key="tasks.id", max_length=36)
    job_id: str = Field(foreign_key="jobs.id", max_length=36)
    node_id: str = Field(foreign_key="nodes.id", max_length=36)
    node_owner_id: int = Field(foreign_key="users.id")
    state: str = Field(default=LEASE_ACTIVE, max_length=16)
    deadline: datetime
    created_at: datetime
    reported_at: datetime | None = None
    status: str = Field(
        default="", max_length=24
    )  # what the worker said: succeeded, failed, timeout, ...
    exit_code: int | None = None
    stdout_sha256: str | None = Field(default=None, max_length=64)
    outputs: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    result_hash: str | None = Field(default=None, max_length=64)
    # Usage as reported, then as accepted after the coordinator's checks (see coordinator/rewards).
    usage: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    charged_micro: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    paid_micro: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    reason: str = Field(default="", max_length=500)


class TaskLog(SQLModel, table=True):
    __tablename__ = "task_logs"
    __table_args__ = (Index("ix_task_logs_task_id_id", "task_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    task_id: str = Field(foreign_key="tasks.id", max_length=36)
    lease_id: str = Field(max_length=36)
    stream: str = Field(max_length=8)
    text: str
    created_at: datetime
