"""A node is trusted from the result that earns it, even while the node row its polls carry is older (the
servicer caches a node for seconds; a long-poll holds it); and a quarantine still applies at once. On SQLite
and PostgreSQL, with the real dispatcher, verifier and ledger."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.jobs.models import JOB_COMPLETED, Job
from coordinator.nodes.models import Node
from coordinator.scheduling.service import _Effects, effective_trust
from coordinator.verification.core import TRUST_STREAK, TrustState
from tests.admin.helpers import submit
from tests.jobs.helpers import StandInWorker, funded, run_on_loop
from tests.support import RunningCoordinator, bearer

OUT = {"out.txt": b"42\n"}


def _state(c: RunningCoordinator, job_id: str) -> str:
    with c.coordinator.db.read() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job.state


def _revision(c: RunningCoordinator, node_id: str) -> int:
    with c.coordinator.db.read() as session:
        node = session.get(Node, node_id)
        assert node is not None
        return node.trust_revision


def test_a_node_is_trusted_from_the_result_that_earns_it(db_url: str, tmp_path: Path) -> None:
    with RunningCoordinator.start(db_url=db_url, data_dir=tmp_path, spot_check_rate=0.0) as c:
        _, alice = funded(c, "alice", 100 * 1_000_000)
        _, bob_token = c.signup("bob")
        _, carol_token = c.signup("carol")
        # Each stand-in keeps the node it authenticated at the start, as a worker's cached row: no results.
        bob = StandInWorker(c, bob_token, "bob-pc")
        carol = StandInWorker(c, carol_token, "carol-pc")
        assert bob.node.valid_results == 0

        for _ in range(TRUST_STREAK):
            job_id = submit(c, alice, replicas=1)
            assert bob.run_one(OUT, b"42\n", []) is not None
            # Bob is not trusted yet: his result waits for a cross-check on another owner's node.
            assert _state(c, job_id) != JOB_COMPLETED
            assert carol.run_one(OUT, b"42\n", []) is not None
            assert _state(c, job_id) == JOB_COMPLETED

        # Ten agreeing results: his next single-replica task is accepted on his result alone, although the
        # node his poll carries still shows none.
        job_id = submit(c, alice, replicas=1)
        assert bob.run_one(OUT, b"42\n", []) is not None
        assert _state(c, job_id) == JOB_COMPLETED
        assert carol.run_one(OUT, b"42\n", []) is None

        # An administrator quarantines Bob's node: it applies to his very next poll, whatever row it carries.
        admin_token = c.make_admin("root")
        r = c.http.post(
            f"/api/v1/admin/nodes/{bob.node.id}/quarantine",
            json={"reason": "Odd results."},
            headers=bearer(admin_token),
        )
        assert r.status_code == 200, r.text
        # Eleven agreeing results, then the quarantine: each write of his trust is one revision.
        assert _revision(c, bob.node.id) == TRUST_STREAK + 2
        submit(c, alice, replicas=1)
        assert bob.run_one(OUT, b"42\n", []) is None

        # Another process (one serving only the REST API) releases it, and this dispatcher is not told. The
        # row Bob's polls carried before is older than the quarantine this process remembers; once his row is
        # read again, the release is the newer.
        admin = c.coordinator.issuer.verify(admin_token)
        c.coordinator.services.node_admin.release(admin, bob.node.id)
        assert _revision(c, bob.node.id) == TRUST_STREAK + 3
        assert bob.run_one(OUT, b"42\n", []) is None
        with c.coordinator.db.read() as session:
            fresh = session.get(Node, bob.node.id)
            assert fresh is not None
            session.expunge(fresh)
        bob.node = fresh
        assert bob.run_one(OUT, b"42\n", []) is not None


TRUSTED = TrustState(TRUST_STREAK, TRUST_STREAK, 0, False, revision=TRUST_STREAK)
FRESH = TrustState(0, 0, 0, False, revision=0)


@pytest.mark.parametrize(
    ("row", "written", "expected"),
    [
        pytest.param(FRESH, None, (False, False), id="nothing written: the row"),
        pytest.param(TRUSTED, None, (True, False), id="a trusted row, nothing written"),
        pytest.param(FRESH, TRUSTED, (True, False), id="trust earned here since the row was read"),
        pytest.param(
            TRUSTED,
            TrustState(0, TRUST_STREAK, 1, False, revision=TRUST_STREAK + 1),
            (False, False),
            id="trust lost here since the row was read",
        ),
        pytest.param(
            TrustState(0, TRUST_STREAK, 1, False, revision=TRUST_STREAK + 1),
            TRUSTED,
            (False, False),
            id="a row another process wrote since",
        ),
        pytest.param(
            TRUSTED,
            TrustState(TRUST_STREAK, TRUST_STREAK, 0, True, revision=TRUST_STREAK + 1),
            (False, True),
            id="quarantined here since the row was read",
        ),
        pytest.param(
            TrustState(0, TRUST_STREAK, 0, False, revision=TRUST_STREAK + 2),
            TrustState(TRUST_STREAK, TRUST_STREAK, 0, True, revision=TRUST_STREAK + 1),
            (False, False),
            id="released by another process since this one quarantined it",
        ),
        pytest.param(
            TrustState(0, 0, 0, True, revision=1),
            TrustState(0, 0, 0, False, revision=2),
            (False, False),
            id="released here since the row was read",
        ),
        pytest.param(
            TrustState(0, 0, 0, True, revision=1),
            TrustState(0, 0, 0, False, revision=1),
            (False, True),
            id="one revision, two states (cannot happen): the stricter",
        ),
    ],
)
def test_effective_trust(
    row: TrustState, written: TrustState | None, expected: tuple[bool, bool]
) -> None:
    assert effective_trust(row, written) == expected


def test_the_dispatcher_keeps_the_newest_trust_it_hears_of(tmp_path: Path) -> None:
    """Verifications may be applied out of commit order, and an administrator's change may reach the loop
    after a verification that followed it: the higher revision stays."""
    with RunningCoordinator.start(db_url=f"sqlite:///{tmp_path / 'c.db'}", data_dir=tmp_path) as c:
        dispatcher = c.coordinator.dispatcher

        def verified(revision: int, streak: int) -> None:
            state = TrustState(streak, streak, 0, False, revision=revision)
            run_on_loop(c, dispatcher._apply(_Effects(trust={"n1": state})))

        verified(3, 3)
        verified(2, 2)  # committed before the one above, applied after it
        assert dispatcher.trust["n1"].revision == 3
        dispatcher.note_trust(
            "n1", TrustState(0, 3, 0, True, revision=2)
        )  # older than what is known
        assert dispatcher.trust["n1"] == TrustState(3, 3, 0, False, revision=3)
        dispatcher.note_trust("n1", TrustState(3, 3, 0, True, revision=4))
        verified(
            4, 4
        )  # cannot share a revision with the quarantine; if it did, the first one stays
        assert dispatcher.trust["n1"].quarantined
        verified(5, 0)
        assert dispatcher.trust["n1"].revision == 5
