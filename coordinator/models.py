"""Every table, imported in one place so SQLModel's metadata (and Alembic) sees the whole schema."""

from sqlmodel import SQLModel

from coordinator.accounts.models import RefreshToken, User
from coordinator.admin.models import AuditEntry, PriceChange
from coordinator.jobs.models import Blob, Job, JobDependency, Lease, Task, TaskLog
from coordinator.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from coordinator.nodes.models import Node

metadata = SQLModel.metadata

__all__ = [
    "AuditEntry",
    "Blob",
    "Job",
    "JobDependency",
    "Lease",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerTransaction",
    "Node",
    "PriceChange",
    "RefreshToken",
    "Task",
    "TaskLog",
    "User",
    "metadata",
]
