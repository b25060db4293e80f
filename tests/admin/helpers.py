"""Helpers for admin tests: funded users, jobs submitted over REST, stand-in workers that take leases from the
real dispatcher, and the audit log as an administrator sees it."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
from sqlmodel import select

from coordinator.admin.models import AuditEntry
from coordinator.jobs.models import JOB_FINAL, TASK_ACCEPTED, Job, Task
from tests.jobs.helpers import StandInWorker, spec
from tests.jobs.helpers import funded as funded  # re-exported for the admin tests
from tests.support import RunningCoordinator, bearer

_names = itertools.count()


def submit(c: RunningCoordinator, token: str, **overrides: Any) -> str:
    r = c.http.post("/api/v1/jobs", json=spec(**overrides), headers=bearer(token))
    assert r.status_code == 201, r.text
    return str(r.json()["job_id"])


def volunteer(c: RunningCoordinator) -> StandInWorker:
    """A node of a new owner (the verifier wants replicas on distinct owners)."""
    name = f"vol{next(_names)}"
    _, token = c.signup(name)
    return StandInWorker(c, token, f"{name}-pc")


def run_until_final(c: RunningCoordinator, job_ids: list[str], *, rounds: int = 20) -> None:
    """Let stand-in volunteers lease and report every task of ``job_ids`` until each job is final."""
    for _ in range(rounds):
        with c.coordinator.db.read() as session:
            open_jobs = [
                j
                for j in job_ids
                if (row := session.get(Job, j)) is not None and row.state not in JOB_FINAL
            ]
        if not open_jobs:
            return
        ran = volunteer(c).run_one({"out.txt": b"42\n"}, b"42\n", [("stdout", "42")])
        assert ran is not None, "the scheduler had nothing for a fresh node while jobs were open"
    raise AssertionError(f"jobs {job_ids} did not finish after {rounds} volunteers")


def run_until_accepted(c: RunningCoordinator, job_id: str, tasks: int, *, rounds: int = 10) -> None:
    """Let stand-in volunteers run tasks until ``tasks`` of the job are accepted (the rest stay open)."""
    for _ in range(rounds):
        volunteer(c).run_one({"out.txt": b"42\n"}, b"42\n", [])
        with c.coordinator.db.read() as session:
            states = [t.state for t in session.exec(select(Task).where(Task.job_id == job_id))]
        if states.count(TASK_ACCEPTED) >= tasks:
            return
    raise AssertionError(f"fewer than {tasks} task(s) of {job_id} were accepted")


def error(r: httpx.Response) -> tuple[int, str, str]:
    body = r.json()["error"]
    return r.status_code, body["code"], body["message"]


CONSOLE = "hivemind coordinator create-admin"
"""``detail.via`` of the entries the console writes when a test's admins are made (``make_admin``)."""


def audit_entries(c: RunningCoordinator, token: str, **filters: Any) -> list[dict[str, Any]]:
    """The audit log as the API gives it, without the entries of the test's own admin set-up."""
    r = c.http.get("/api/v1/admin/audit-log", params=filters, headers=bearer(token))
    assert r.status_code == 200, r.text
    entries: list[dict[str, Any]] = r.json()["entries"]
    return [e for e in entries if e["detail"].get("via") != CONSOLE]


def audit_count(c: RunningCoordinator) -> int:
    """Rows in the audit log, read straight from the database (without the test's admin set-up)."""
    with c.coordinator.db.read() as session:
        rows = session.exec(select(AuditEntry)).all()
    return sum(1 for row in rows if (row.detail or {}).get("via") != CONSOLE)
