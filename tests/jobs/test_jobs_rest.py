"""The jobs REST API (/api/v1/inputs, /api/v1/jobs/...) against a real coordinator: escrow and refunds to the
micro-CPT, refusals that leave nothing behind, who may see what, uploads, logs and result downloads."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.jobs.conftest import JobsCoordinator
from tests.jobs.helpers import (
    CPT,
    balance,
    complete_only_task,
    counts,
    escrow_balance,
    funded,
    sha,
    spec,
)
from tests.support import RunningCoordinator, bearer


def submit(c: RunningCoordinator, token: str, **overrides: Any) -> httpx.Response:
    return c.http.post("/api/v1/jobs", json=spec(**overrides), headers=bearer(token))


def error(r: httpx.Response) -> tuple[int, str, str]:
    body = r.json()["error"]
    return r.status_code, body["code"], body["message"]


def audit_clean(c: RunningCoordinator) -> bool:
    admin = c.make_admin("auditor")
    r = c.http.get("/api/v1/admin/ledger/audit", headers=bearer(admin))
    assert r.status_code == 200, r.text
    return bool(r.json() == {"status": "ok"})


# -- submit, escrow, cancel, refund --------------------------------------------------------------------------
def test_submit_holds_the_budget_and_cancel_refunds_it(jobs_coordinator: JobsCoordinator) -> None:
    c = jobs_coordinator.running
    ada, token = funded(c, "ada", 10 * CPT)
    upload = c.http.post("/api/v1/inputs", content=b"1,2,3\n", headers=bearer(token)).json()
    r = submit(c, token, inputs=[{"path": "data.csv", "sha256": upload["sha256"]}])
    assert r.status_code == 201, r.text
    body = r.json()
    job_id = body["job_id"]
    assert (body["escrow_micro"], body["task_count"], body["replayed"]) == (2 * CPT, 1, False)
    assert body["message"] == "Job submitted."
    assert balance(c, ada) == 8 * CPT and escrow_balance(c, job_id) == 2 * CPT

    job = c.http.get(f"/api/v1/jobs/{job_id}", headers=bearer(token)).json()
    assert (job["job_id"], job["name"], job["state"], job["owner_id"]) == (
        job_id,
        "square",
        "queued",
        ada,
    )
    assert (job["escrow_micro"], job["charged_micro"], job["refunded_micro"]) == (2 * CPT, 0, 0)
    assert job["spec"]["inputs"] == [
        {"path": "data.csv", "sha256": upload["sha256"], "from_job_id": "", "from_output": ""}
    ]
    assert job["spec"]["timeout_s"] == 3600  # defaults filled in as accepted
    (task,) = job["tasks"]
    assert (task["index"], task["state"], task["outputs"], task["exit_code"]) == (
        0,
        "queued",
        [],
        None,
    )

    listed = c.http.get("/api/v1/jobs", headers=bearer(token)).json()
    assert [j["job_id"] for j in listed["jobs"]] == [job_id] and listed["next_page_token"] == ""
    assert c.http.get("/api/v1/jobs?state=completed", headers=bearer(token)).json()["jobs"] == []

    r = c.http.post(f"/api/v1/jobs/{job_id}/cancel", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["refunded_micro"] == 2 * CPT
    assert balance(c, ada) == 10 * CPT and escrow_balance(c, job_id) == 0
    job = c.http.get(f"/api/v1/jobs/{job_id}", headers=bearer(token)).json()
    assert (job["state"], job["refunded_micro"], job["tasks"][0]["state"]) == (
        "cancelled",
        2 * CPT,
        "cancelled",
    )
    assert job["finished_at"] is not None

    again = c.http.post(f"/api/v1/jobs/{job_id}/cancel", headers=bearer(token))
    assert error(again)[:2] == (409, "FAILED_PRECONDITION")
    assert "already cancelled" in error(again)[2]
    assert balance(c, ada) == 10 * CPT  # refunded once
    assert audit_clean(c)


def test_a_job_array_makes_one_task_per_member(sqlite_jobs: JobsCoordinator) -> None:
    c = sqlite_jobs.running
    _, token = funded(c, "ada")
    r = submit(c, token, array_size=3)
    assert r.status_code == 201 and r.json()["task_count"] == 3
    sets = [{"env": {"N": str(n)}, "args": [str(n)]} for n in range(4)]
    r = submit(c, token, parameter_sets=sets)
    assert r.status_code == 201 and r.json()["task_count"] == 4
    job = c.http.get(f"/api/v1/jobs/{r.json()['job_id']}", headers=bearer(token)).json()
    assert [t["index"] for t in job["tasks"]] == [0, 1, 2, 3]
    assert job["spec"]["parameter_sets"] == sets


def test_resubmitting_with_the_idempotency_key_holds_nothing_twice(
    jobs_coordinator: JobsCoordinator,
) -> None:
    c = jobs_coordinator.running
    ada, token = funded(c, "ada", 10 * CPT)
    first = submit(c, token, idempotency_key="run-1")
    again = submit(c, token, idempotency_key="run-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["job_id"] == first.json()["job_id"] and again.json()["replayed"] is True
    assert balance(c, ada) == 8 * CPT and counts(c)["jobs"] == 1


def test_list_pages_newest_first(sqlite_jobs: JobsCoordinator) -> None:
    c = sqlite_jobs.running
    _, token = funded(c, "ada")
    ids = [submit(c, token, max_budget_micro=CPT // 10).json()["job_id"] for _ in range(3)]
    first = c.http.get("/api/v1/jobs?page_size=2", headers=bearer(token)).json()
    second = c.http.get(
        "/api/v1/jobs",
        params={"page_size": 2, "page_token": first["next_page_token"]},
        headers=bearer(token),
    ).json()
    assert [j["job_id"] for j in first["jobs"] + second["jobs"]] == ids[::-1]
    assert second["next_page_token"] == ""
    r = c.http.get("/api/v1/jobs?page_size=500", headers=bearer(token))
    assert error(r)[:2] == (400, "INVALID_ARGUMENT") and "page_size" in error(r)[2]


# -- refusals leave nothing behind ---------------------------------------------------------------------------
BAD_SPECS: list[tuple[str, dict[str, Any], int, str]] = [
    ("invalid image", {"image": "Not An Image!"}, 400, "is not a valid image name"),
    ("negative cpu", {"resources": {"cpu_cores": -2}}, 400, "cpu_cores cannot be negative"),
    ("negative memory", {"resources": {"memory_gb": -1}}, 400, "memory_gb cannot be negative"),
    (
        "unknown dependency",
        {"depends_on": ["00000000-0000-0000-0000-000000000000"]},
        400,
        "is not one of your jobs",
    ),
    (
        "budget below the minimum cost",
        {"max_budget_micro": 1},
        400,
        "below this job's minimum cost",
    ),
    ("no budget", {"max_budget_micro": 0}, 400, "Set max_budget_micro"),
    (
        "input never uploaded",
        {"inputs": [{"path": "x.csv", "sha256": "ab" * 32}]},
        400,
        "never uploaded",
    ),
    ("output escaping the work dir", {"output_paths": ["../etc/passwd"]}, 400, "no '..'"),
    ("no command", {"command": []}, 400, "Give the command to run"),
    ("budget as text", {"max_budget_micro": "5"}, 422, "max_budget_micro"),
    ("misspelt field", {"resources": {"cpu": 2}}, 422, "resources.cpu"),
]


def test_each_bad_spec_is_refused_and_nothing_is_held(sqlite_jobs: JobsCoordinator) -> None:
    c = sqlite_jobs.running
    ada, token = funded(c, "ada", 10 * CPT)
    before = counts(c)
    for name, overrides, status, fragment in BAD_SPECS:
        r = submit(c, token, **overrides)
        assert r.status_code == status, (name, r.text)
        assert fragment in error(r)[2], (name, r.text)
        assert balance(c, ada) == 10 * CPT, name
        assert counts(c) == before, name


def test_insufficient_funds_is_refused_with_a_clear_message(
    jobs_coordinator: JobsCoordinator,
) -> None:
    c = jobs_coordinator.running
    ada, token = funded(c, "ada", 1 * CPT)
    before = counts(c)
    r = submit(c, token, max_budget_micro=5 * CPT)
    status, code, message = error(r)
    assert (status, code) == (409, "FAILED_PRECONDITION"), message
    assert "insufficient" in message.lower() or "not enough" in message.lower(), message
    assert balance(c, ada) == 1 * CPT and counts(c) == before
    assert audit_clean(c)


def test_a_dependency_on_someone_elses_job_is_refused(sqlite_jobs: JobsCoordinator) -> None:
    c = sqlite_jobs.running
    _, ada = funded(c, "ada")
    bob_id, bob = funded(c, "bob")
    parent = submit(c, ada).json()["job_id"]
    r = submit(c, bob, depends_on=[parent])
    assert error(r)[:2] == (400, "INVALID_ARGUMENT") and "not one of your jobs" in error(r)[2]
    assert balance(c, bob_id) == 10 * CPT


# -- who may do what -----------------------------------------------------------------------------------------
def test_every_route_needs_a_signed_in_user(sqlite_jobs: JobsCoordinator) -> None:
    c = sqlite_jobs.running
    _, token = funded(c, "ada")
    job_id = submit(c, token).json()["job_id"]
    routes = [
        ("POST", "/api/v1/inputs"),
        ("POST", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs"),
        ("GET", f"/api/v1/jobs/{job_id}"),
        ("POST", f"/api/v1/jobs/{job_id}/cancel"),
        ("GET", f"/api/v1/jobs/{job_id}/tasks/0/logs"),
        ("GET", f"/api/v1/jobs/{job_id}/tasks/0/outputs/out.txt"),
    ]
    for method, path in routes:
        for headers in ({}, bearer("not-a-token")):
            r = c.http.request(
                method, path, headers=headers, json=spec() if path.endswith("jobs") else None
            )
            assert error(r)[:2] == (401, "UNAUTHENTICATED"), (method, path, r.text)
    assert counts(c)["jobs"] == 1 and counts(c)["blobs"] == 0


def test_another_users_job_is_forbidden(jobs_coordinator: JobsCoordinator) -> None:
    c = jobs_coordinator.running
    ada_id, ada = funded(c, "ada")
    _, bob = funded(c, "bob")
    job_id = submit(c, ada).json()["job_id"]
    for method, path in (
        ("GET", f"/api/v1/jobs/{job_id}"),
        ("POST", f"/api/v1/jobs/{job_id}/cancel"),
        ("GET", f"/api/v1/jobs/{job_id}/tasks/0/logs"),
        ("GET", f"/api/v1/jobs/{job_id}/tasks/0/logs?follow=true"),
        ("GET", f"/api/v1/jobs/{job_id}/tasks/0/outputs/out.txt"),
    ):
        r = c.http.request(method, path, headers=bearer(bob))
        assert error(r)[:2] == (403, "PERMISSION_DENIED"), (method, path, r.text)
        assert "belongs to someone else" in error(r)[2]
    assert c.http.get("/api/v1/jobs", headers=bearer(bob)).json()["jobs"] == []
    assert balance(c, ada_id) == 8 * CPT  # bob's cancel did nothing
    # An administrator may look.
    admin = c.make_admin("root")
    assert c.http.get(f"/api/v1/jobs/{job_id}", headers=bearer(admin)).status_code == 200


def test_unknown_jobs_and_tasks_are_404(sqlite_jobs: JobsCoordinator) -> None:
    c = sqlite_jobs.running
    _, token = funded(c, "ada")
    job_id = submit(c, token).json()["job_id"]
    r = c.http.get("/api/v1/jobs/no-such-job", headers=bearer(token))
    assert error(r)[:2] == (404, "NOT_FOUND") and "no job" in error(r)[2]
    r = c.http.get(f"/api/v1/jobs/{job_id}/tasks/5/logs", headers=bearer(token))
    assert error(r)[:2] == (404, "NOT_FOUND") and "has no task 5" in error(r)[2]


# -- uploads -------------------------------------------------------------------------------------------------
def test_uploading_the_same_bytes_twice_stores_them_once(sqlite_jobs: JobsCoordinator) -> None:
    c = sqlite_jobs.running
    _, token = c.signup("ada")
    data = b"x,y\n" * 1000
    first = c.http.post("/api/v1/inputs", content=data, headers=bearer(token))
    again = c.http.post(
        "/api/v1/inputs", content=data, headers=bearer(token) | {"X-Content-SHA256": sha(data)}
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == {"sha256": sha(data), "size": len(data), "already_present": False}
    assert again.json() == {"sha256": sha(data), "size": len(data), "already_present": True}
    assert counts(c)["blobs"] == 1
    assert c.coordinator.blobs.path_of(sha(data)).read_bytes() == data


def test_a_streamed_upload_without_a_length_is_stored(sqlite_jobs: JobsCoordinator) -> None:
    c = sqlite_jobs.running
    _, token = c.signup("ada")
    parts = [bytes([n]) * 100_000 for n in range(5)]
    r = c.http.post("/api/v1/inputs", content=iter(parts), headers=bearer(token))
    assert r.status_code == 201, r.text
    assert r.json()["sha256"] == sha(b"".join(parts)) and r.json()["size"] == 500_000


def test_an_upload_that_does_not_match_its_sha256_is_not_kept(sqlite_jobs: JobsCoordinator) -> None:
    c = sqlite_jobs.running
    _, token = c.signup("ada")
    r = c.http.post(
        "/api/v1/inputs", content=b"abc", headers=bearer(token) | {"X-Content-SHA256": sha(b"abd")}
    )
    assert error(r)[:2] == (400, "INVALID_ARGUMENT") and "corrupted" in error(r)[2]
    r = c.http.post(
        "/api/v1/inputs", content=b"abc", headers=bearer(token) | {"X-Content-SHA256": "zz"}
    )
    assert error(r)[:2] == (400, "INVALID_ARGUMENT") and "64 lowercase hex" in error(r)[2]
    assert counts(c)["blobs"] == 0


def test_an_oversized_upload_is_refused_and_not_kept(small_inputs: JobsCoordinator) -> None:
    c = small_inputs.running
    _, token = c.signup("ada")
    assert c.http.post("/api/v1/inputs", content=b"a" * 1024, headers=bearer(token)).is_success
    for body in (
        b"b" * 1025,
        iter([b"c" * 600, b"c" * 600]),
    ):  # announced, and streamed unannounced
        r = c.http.post("/api/v1/inputs", content=body, headers=bearer(token))
        assert error(r)[:2] == (400, "INVALID_ARGUMENT"), r.text
        assert "larger than the limit" in error(r)[2]
    assert counts(c)["blobs"] == 1
    assert not any((c.coordinator.blobs.root / "tmp").iterdir())  # no half-written file left


# -- logs and results of a finished task ---------------------------------------------------------------------
def finished_job(c: RunningCoordinator, token: str) -> str:
    """A job whose one task stand-in workers ran: two log lines, out.txt and stdout."""
    job_id = str(submit(c, token).json()["job_id"])
    assert job_id == complete_only_task(
        c, {"out.txt": b"42\n"}, b"stdout says hi\n", [("stdout", "starting"), ("stderr", "warn")]
    )
    return job_id


def test_logs_as_json_and_as_server_sent_events(sqlite_jobs: JobsCoordinator) -> None:
    c = sqlite_jobs.running
    _, token = funded(c, "ada")
    job_id = finished_job(c, token)
    queued = submit(c, token).json()["job_id"]
    assert c.http.get(f"/api/v1/jobs/{queued}/tasks/0/logs", headers=bearer(token)).json() == []
    lines = c.http.get(f"/api/v1/jobs/{job_id}/tasks/0/logs", headers=bearer(token)).json()
    assert [(x["stream"], x["text"]) for x in lines] == [("stdout", "starting"), ("stderr", "warn")]
    after_first = c.http.get(
        f"/api/v1/jobs/{job_id}/tasks/0/logs",
        params={"after_seq": lines[0]["seq"]},
        headers=bearer(token),
    ).json()
    assert [x["text"] for x in after_first] == ["warn"]

    with c.http.stream(
        "GET", f"/api/v1/jobs/{job_id}/tasks/0/logs?follow=true", headers=bearer(token)
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [e for e in "\n".join(r.iter_lines()).split("\n\n") if e.strip()]
    parsed = [dict(line.split(": ", 1) for line in e.splitlines()) for e in events]
    assert [(e["event"], json.loads(e["data"])["text"]) for e in parsed[:2]] == [
        ("stdout", "starting"),
        ("stderr", "warn"),
    ]
    assert parsed[0]["id"] == str(lines[0]["seq"])
    assert parsed[-1]["event"] == "end" and json.loads(parsed[-1]["data"]) == {"state": "accepted"}


def test_following_a_cancelled_task_ends_at_once(sqlite_jobs: JobsCoordinator) -> None:
    c = sqlite_jobs.running
    _, token = funded(c, "ada")
    job_id = submit(c, token).json()["job_id"]
    c.http.post(f"/api/v1/jobs/{job_id}/cancel", headers=bearer(token))
    r = c.http.get(f"/api/v1/jobs/{job_id}/tasks/0/logs?follow=1", headers=bearer(token))
    assert r.text == 'event: end\ndata: {"state": "cancelled"}\n\n'


def test_download_outputs_and_stdout(jobs_coordinator: JobsCoordinator) -> None:
    c = jobs_coordinator.running
    ada, token = funded(c, "ada")
    job_id = finished_job(c, token)
    job = c.http.get(f"/api/v1/jobs/{job_id}", headers=bearer(token)).json()
    assert job["state"] == "completed"
    (task,) = job["tasks"]
    assert task["outputs"] == [{"path": "out.txt", "sha256": sha(b"42\n"), "size": 3}]
    assert task["stdout_sha256"] == sha(b"stdout says hi\n") and task["exit_code"] == 0

    r = c.http.get(f"/api/v1/jobs/{job_id}/tasks/0/outputs/out.txt", headers=bearer(token))
    assert r.status_code == 200 and r.content == b"42\n"
    assert r.headers["x-content-sha256"] == sha(b"42\n") and r.headers["content-length"] == "3"
    assert 'filename="out.txt"' in r.headers["content-disposition"]
    r = c.http.get(f"/api/v1/jobs/{job_id}/tasks/0/outputs/@stdout", headers=bearer(token))
    assert (
        r.content == b"stdout says hi\n"
        and 'filename="stdout.txt"' in r.headers["content-disposition"]
    )
    r = c.http.get(f"/api/v1/jobs/{job_id}/tasks/0/outputs/missing.txt", headers=bearer(token))
    assert error(r)[:2] == (404, "NOT_FOUND") and "Its outputs: out.txt" in error(r)[2]
    # The money: charged to the escrow, the rest refunded, the books balanced.
    assert job["charged_micro"] > 0 and job["charged_micro"] + job["refunded_micro"] == 2 * CPT
    assert balance(c, ada) == 10 * CPT - job["charged_micro"]
    assert escrow_balance(c, job_id) == 0
    assert audit_clean(c)


def test_a_result_not_yet_verified_cannot_be_downloaded(sqlite_jobs: JobsCoordinator) -> None:
    c = sqlite_jobs.running
    _, token = funded(c, "ada")
    job_id = submit(c, token).json()["job_id"]
    r = c.http.get(f"/api/v1/jobs/{job_id}/tasks/0/outputs/out.txt", headers=bearer(token))
    assert error(r)[:2] == (409, "FAILED_PRECONDITION")
    assert "no verified result yet (it is queued)" in error(r)[2]
