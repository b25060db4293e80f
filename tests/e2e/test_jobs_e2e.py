"""The whole loop with real parts: a coordinator, workers running real containers, verification, payment."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import select

from coordinator.jobs.models import Lease
from coordinator.ledger import service as ledger
from coordinator.ledger.models import MICRO_PER_CPT
from tests.e2e.cluster import cluster


def test_replicated_job_runs_verifies_and_pays_to_the_micro(db_url: str, tmp_path: Path) -> None:
    with cluster(db_url, tmp_path) as c:
        c.user("alice", grant_cpt=100)
        c.add_worker("bob")
        c.add_worker("carol")
        job_id = c.submit(
            "alice",
            name="hello",
            command=["sh", "-c", "echo hello from $HIVEMIND_TASK_INDEX > out.txt; echo done"],
            output_paths=["out.txt"],
            replicas=2,
            quorum=2,
        )
        status = c.wait("alice", job_id)
        assert status.state == "completed", status
        assert c.download("alice", job_id, "out.txt") == b"hello from 0\n"
        assert c.download("alice", job_id, "@stdout") == b"done\n"

        with c.db.read() as s:
            leases = s.exec(select(Lease).where(Lease.job_id == job_id)).all()
            valid = [x for x in leases if x.state == "valid"]
            fees = (
                ledger.get_balance_of_account(s, "system:fees")
                if hasattr(ledger, "get_balance_of_account")
                else None
            )
        assert len(valid) == 2 and {x.node_owner_id for x in valid} != 1
        charged = sum(x.charged_micro for x in valid)
        paid = {x.node_owner_id: x.paid_micro for x in valid}
        assert charged == status.charged_micro > 0
        assert c.balance("alice") == 100 * MICRO_PER_CPT - charged
        assert status.refunded_micro == MICRO_PER_CPT - charged
        assert c.balance("bob") + c.balance("carol") == sum(paid.values())
        assert fees is None or fees == charged - sum(paid.values())
        assert c.audit() == []
