"""A node is trusted from the result that earns it, even while the node row its polls carry is older (the
servicer caches a node for seconds; a long-poll holds it); and a quarantine still applies at once. On SQLite
and PostgreSQL, with the real dispatcher, verifier and ledger."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.jobs.models import JOB_COMPLETED, Job
from coordinator.scheduling.service import effective_trust
from coordinator.verification.core import TRUST_STREAK, TrustState
from tests.admin.helpers import submit
from tests.jobs.helpers import StandInWorker, funded
from tests.support import RunningCoordinator

OUT = {"out.txt": b"42\n"}


def _state(c: RunningCoordinator, job_id: str) -> str:
    with c.coordinator.db.read() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job.state


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

        # A quarantine applies to the very next poll, whatever the row says.
        c.coordinator.dispatcher.note_trust(
            bob.node.id,
            TrustState(TRUST_STREAK + 1, TRUST_STREAK + 1, 0, quarantined=True),
        )
        submit(c, alice, replicas=1)
        assert bob.run_one(OUT, b"42\n", []) is None


TRUSTED = TrustState(TRUST_STREAK, TRUST_STREAK, 0, False)
FRESH = TrustState(0, 0, 0, False)


@pytest.mark.parametrize(
    ("row", "written", "expected"),
    [
        pytest.param(FRESH, None, (False, False), id="nothing written: the row"),
        pytest.param(TRUSTED, None, (True, False), id="a trusted row, nothing written"),
        pytest.param(FRESH, TRUSTED, (True, False), id="trust earned here since the row was read"),
        pytest.param(
            TRUSTED,
            TrustState(0, TRUST_STREAK + 1, 1, False),
            (False, False),
            id="trust lost here since the row was read",
        ),
        pytest.param(
            TrustState(0, TRUST_STREAK + 2, 1, False),
            TRUSTED,
            (False, False),
            id="a row written elsewhere since, with more results",
        ),
        pytest.param(
            TrustState(0, TRUST_STREAK, 0, False),
            TRUSTED,
            (False, False),
            id="as many results each (a release resets the streak): the stricter",
        ),
        pytest.param(
            TrustState(0, 0, 0, True), TRUSTED, (False, True), id="quarantined in the row"
        ),
        pytest.param(
            TRUSTED,
            TrustState(TRUST_STREAK, TRUST_STREAK, 0, True),
            (False, True),
            id="quarantined here",
        ),
    ],
)
def test_effective_trust(
    row: TrustState, written: TrustState | None, expected: tuple[bool, bool]
) -> None:
    assert effective_trust(row, written) == expected
