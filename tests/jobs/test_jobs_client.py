"""The submitter's Python client (client_gui/engine/jobs_client.py) over real gRPC to a real coordinator, and
its pure helpers: exact CPT amounts and friendly spec dicts."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from client_gui.engine.coordinator_client import (
    NotAuthenticated,
    PermissionRefused,
    RequestRefused,
)
from client_gui.engine.jobs_client import (
    STDOUT,
    JobsClient,
    JobSpecError,
    JobWaitTimeout,
    cpt_to_micro,
    spec_from_dict,
)
from tests.jobs.conftest import JobsCoordinator
from tests.jobs.helpers import CPT, balance, complete_only_task, counts, fund, sha
from tests.support import PASSWORD

SPEC = {
    "name": "square",
    "image": "python:3.11-slim",
    "command": "python3 -c 'print(6 * 7)'",
    "output_paths": ["out.txt"],
    "budget_cpt": "2",
}


def signed_in(
    jc: JobsCoordinator, name: str, amount_micro: int = 10 * CPT
) -> tuple[int, JobsClient]:
    user_id = jc.running.register(name)
    fund(jc.running, user_id, amount_micro)
    client = JobsClient(jc.grpc_target)
    client.login(name, PASSWORD)
    return user_id, client


# -- pure helpers --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "micro"),
    [
        ("1", 1_000_000),
        ("2.5", 2_500_000),
        ("0.000001", 1),
        ("1.500000", 1_500_000),
        ("123456789.123456", 123_456_789_123_456),
        (Decimal("0.1"), 100_000),
        (3, 3_000_000),
    ],
)
def test_cpt_converts_exactly(text: str | int | Decimal, micro: int) -> None:
    assert cpt_to_micro(text) == micro


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("0.0000001", "more than 6 decimals"),
        ("1.1234567", "more than 6 decimals"),
        ("0", "more than 0 CPT"),
        ("-1", "more than 0 CPT"),
        ("abc", "not an amount of CPT"),
        ("nan", "not an amount of CPT"),
        ("1e30", "more than any wallet can hold"),
    ],
)
def test_cpt_refuses_what_is_not_a_micro_cpt_amount(text: str, fragment: str) -> None:
    with pytest.raises(JobSpecError, match=fragment):
        cpt_to_micro(text)


def test_spec_from_dict_splits_a_command_and_converts_the_budget() -> None:
    spec = spec_from_dict(SPEC | {"resources": {"cpu_cores": 2}, "env": {"A": "1"}})
    assert list(spec.command) == ["python3", "-c", "print(6 * 7)"]
    assert spec.max_budget_micro == 2 * CPT and spec.resources.cpu_cores == 2
    assert dict(spec.env) == {"A": "1"} and list(spec.output_paths) == ["out.txt"]


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"image": "x", "cpu": 2}, "unknown field(s) cpu"),
        ({"image": "x", "resources": {"cpu": 2}}, 'no field named "cpu"'),
        ({"image": "x", "max_budget_micro": 1, "budget_cpt": "1"}, "not both"),
        ({"image": "x", "max_budget_micro": 1.5}, "max_budget_micro"),
        ({"image": "x", "budget_cpt": "0.0000001"}, "more than 6 decimals"),
    ],
)
def test_spec_from_dict_refuses_mistakes(raw: dict[str, object], fragment: str) -> None:
    with pytest.raises(JobSpecError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        spec_from_dict(raw)


# -- against the coordinator ---------------------------------------------------------------------------------
def test_upload_submit_get_list_cancel(jobs_coordinator: JobsCoordinator, tmp_path: Path) -> None:
    ada, client = signed_in(jobs_coordinator, "ada")
    c = jobs_coordinator.running
    data = tmp_path / "data.csv"
    data.write_bytes(b"1,2\n" * 200_000)  # several 256 KiB chunks
    digest = client.upload(data)
    assert digest == sha(data.read_bytes())
    again = client.upload_file(data)
    assert again.already_present and again.size == data.stat().st_size

    job_id = client.submit(SPEC | {"inputs": [{"path": "data.csv", "sha256": digest}]})
    assert balance(c, ada) == 8 * CPT
    job = client.get(job_id)
    assert (job.state, job.task_count, job.escrow_micro, job.finished) == (
        "queued",
        1,
        2 * CPT,
        False,
    )
    assert [t.state for t in job.tasks] == ["queued"] and not job.tasks[0].has_result
    assert [j.job_id for j in client.list()] == [job_id]
    assert client.list(state="completed") == []
    with pytest.raises(JobWaitTimeout, match="still queued"):
        client.wait(job_id, timeout_s=0.2, poll_s=0.1)

    assert client.cancel(job_id) == 2 * CPT
    assert balance(c, ada) == 10 * CPT
    final = client.wait(job_id, timeout_s=5, poll_s=0.1)
    assert (final.state, final.refunded_micro) == ("cancelled", 2 * CPT)
    assert list(client.logs(job_id)) == []
    client.close()


def test_refusals_carry_the_coordinators_sentence(jobs_coordinator: JobsCoordinator) -> None:
    ada, client = signed_in(jobs_coordinator, "ada", 1 * CPT)
    c = jobs_coordinator.running
    before = counts(c)
    with pytest.raises(RequestRefused, match="is not a valid image name"):
        client.submit(SPEC | {"image": "Bad Image"})
    with pytest.raises(RequestRefused, match="cpu_cores cannot be negative"):
        client.submit(SPEC | {"resources": {"cpu_cores": -1}})
    with pytest.raises(RequestRefused, match="not one of your jobs"):
        client.submit(SPEC | {"depends_on": ["00000000-0000-0000-0000-000000000000"]})
    with pytest.raises(RequestRefused, match="below this job's minimum cost"):
        client.submit(SPEC | {"budget_cpt": "0.000001"})
    with pytest.raises(RequestRefused) as short:
        client.submit(SPEC | {"budget_cpt": "5"})
    assert (
        "insufficient" in short.value.message.lower() or "not enough" in short.value.message.lower()
    )
    assert balance(c, ada) == 1 * CPT and counts(c) == before

    with pytest.raises(NotAuthenticated):
        JobsClient(jobs_coordinator.grpc_target).list()
    with pytest.raises(NotAuthenticated):
        JobsClient(jobs_coordinator.grpc_target, token="forged").list()
    with pytest.raises(NotAuthenticated):
        client.login("ada", "wrong password")


def test_another_users_job_is_refused(jobs_coordinator: JobsCoordinator) -> None:
    _, ada = signed_in(jobs_coordinator, "ada")
    _, bob = signed_in(jobs_coordinator, "bob")
    job_id = ada.submit(SPEC)
    with pytest.raises(PermissionRefused, match="belongs to someone else"):
        bob.get(job_id)
    with pytest.raises(PermissionRefused):
        bob.cancel(job_id)
    with pytest.raises(PermissionRefused):
        list(bob.logs(job_id))


def test_oversized_upload_is_refused(small_inputs: JobsCoordinator, tmp_path: Path) -> None:
    _, client = signed_in(small_inputs, "ada")
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 2048)
    with pytest.raises(RequestRefused, match="larger than the limit"):
        client.upload(big)
    assert counts(small_inputs.running)["blobs"] == 0


def test_logs_download_and_wait_on_a_finished_job(
    sqlite_jobs: JobsCoordinator, tmp_path: Path
) -> None:
    _, client = signed_in(sqlite_jobs, "ada")
    job_id = client.submit(SPEC)
    assert job_id == complete_only_task(
        sqlite_jobs.running,
        {"out.txt": b"42\n"},
        b"hello\n",
        [("stdout", "starting"), ("stderr", "careful")],
    )
    final = client.wait(job_id, timeout_s=10, poll_s=0.1)
    assert final.state == "completed" and final.tasks[0].has_result
    assert list(client.logs(job_id, 0)) == [("stdout", "starting"), ("stderr", "careful")]
    assert list(client.logs(job_id, 0, follow=True)) == [
        ("stdout", "starting"),
        ("stderr", "careful"),
    ]
    got = client.download(job_id, 0, "out.txt", tmp_path / "r" / "out.txt")
    assert (got.sha256, got.size) == (sha(b"42\n"), 3)
    assert (tmp_path / "r" / "out.txt").read_bytes() == b"42\n"
    client.download(job_id, 0, STDOUT, tmp_path / "r" / "stdout.txt")
    assert (tmp_path / "r" / "stdout.txt").read_bytes() == b"hello\n"
    with pytest.raises(RequestRefused, match="produced no output 'nope'"):
        client.download(job_id, 0, "nope", tmp_path / "r" / "nope")
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["out.txt", "stdout.txt"]
