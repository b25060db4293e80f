"""Tables of the admin domain: the audit log of administrators' actions, and the price table's history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index
from sqlmodel import Field, SQLModel


class AuditEntry(SQLModel, table=True):
    """One administrator action: who did what to what, and when. Written in the action's own transaction."""

    __tablename__ = "admin_audit_log"
    __table_args__ = (
        Index("ix_admin_audit_log_action", "action"),
        Index("ix_admin_audit_log_target", "target"),
        Index("ix_admin_audit_log_actor", "actor"),
    )

    id: int | None = Field(default=None, primary_key=True)
    at: datetime
    actor_id: int | None = Field(default=None, foreign_key="users.id")
    actor: str = Field(max_length=32)
    action: str = Field(max_length=32)
    target: str = Field(max_length=80)
    summary: str = Field(default="", max_length=500)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class PriceChange(SQLModel, table=True):
    """A price table set by an administrator. The newest row is the table in force; older rows are history."""

    __tablename__ = "price_changes"

    id: int | None = Field(default=None, primary_key=True)
    cpu_micro_per_core_second: int = Field(sa_column=Column(BigInteger, nullable=False))
    gpu_micro_per_gpu_second: int = Field(sa_column=Column(BigInteger, nullable=False))
    memory_micro_per_gb_second: int = Field(sa_column=Column(BigInteger, nullable=False))
    platform_fee_bps: int
    min_task_charge_micro: int = Field(sa_column=Column(BigInteger, nullable=False))
    changed_by_id: int | None = Field(default=None, foreign_key="users.id")
    changed_by: str = Field(max_length=32)
    created_at: datetime
