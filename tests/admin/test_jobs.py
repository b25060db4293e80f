"""Every job as an admin sees it: list and filter, inspect (replicas and their nodes, the verifier's outcome,
charges, the prices it runs under), logs; cancel (refund to the micro-CPT) and requeue (a new hold, the
unfinished tasks back in the queue and run to the end), each in the audit log."""

from __future__ import annotations

from coordinator.scheduling.service import PollRequest, ReportedResult, ReportedUsage
from tests.admin.conftest import Admin
from tests.admin.helpers import (
    audit_count,
    audit_entries,
    funded,
    run_until_accepted,
    run_until_final,
    submit,
    volunteer,
)
from tests.jobs.helpers import CPT, balance, escrow_balance, run_on_loop
from tests.support import bearer

POLL = PollRequest(1, 8, 16, 0, 0, True, False)


def test_list_inspect_and_read_logs_of_any_job(admin: Admin) -> None:
    c = admin.c
    h = bearer(admin.admin_token)
    _, carol = funded(c, "carol")
    _, dave = funded(c, "dave")
    done = submit(c, carol, name="done")
    run_until_final(c, [done])
    waiting = submit(c, dave, name="waiting")

    listed = c.http.get("/api/v1/admin/jobs", headers=h).json()
    assert listed["total"] == 2
    assert [(j["name"], j["owner"], j["state"]) for j in listed["jobs"]] == [
        ("waiting", "dave", "queued"),
        ("done", "carol", "completed"),
    ]
    by_owner = c.http.get("/api/v1/admin/jobs", params={"owner": "carol"}, headers=h).json()
    assert [j["job_id"] for j in by_owner["jobs"]] == [done]
    by_state = c.http.get("/api/v1/admin/jobs", params={"state": "queued"}, headers=h).json()
    assert [j["job_id"] for j in by_state["jobs"]] == [waiting]
    bad = c.http.get("/api/v1/admin/jobs", params={"state": "sleeping"}, headers=h)
    assert bad.status_code == 400

    detail = c.http.get(f"/api/v1/admin/jobs/{done}", headers=h).json()
    assert detail["owner"] == "carol" and detail["requeues"] == 0
    assert detail["prices"]["min_task_charge_micro"] == 1000
    (task,) = detail["tasks"]
    assert task["verification"] == "agreed" and task["quorum"] == 2  # cross-checked: new nodes
    assert [
        (x["state"], x["status"], x["charged_micro"], x["paid_micro"]) for x in task["leases"]
    ] == [
        ("valid", "succeeded", 1000, 900),
        ("valid", "succeeded", 1000, 900),
    ]
    assert len({x["node_owner"] for x in task["leases"]}) == 2
    assert [(ch["kind"], ch["amount_micro"]) for ch in detail["charges"]] == [
        ("escrow_hold", 2 * CPT),
        ("task_payment", -2000),
        ("escrow_refund", -(2 * CPT - 2000)),
    ]
    logs = c.http.get(f"/api/v1/admin/jobs/{done}/logs", headers=h).json()
    assert [(line["task_index"], line["stream"], line["text"]) for line in logs] == [
        (0, "stdout", "42"),
        (0, "stdout", "42"),
    ]
    assert {line["lease_id"] for line in logs} == {x["lease_id"] for x in task["leases"]}
    one = c.http.get(f"/api/v1/admin/jobs/{done}/logs", params={"task_index": 3}, headers=h)
    assert one.status_code == 404 and "has no task 3" in one.json()["error"]["message"]
    assert c.http.get("/api/v1/admin/jobs/nope", headers=h).status_code == 404


def test_an_admin_cancels_any_job_and_the_escrow_is_refunded_exactly(admin: Admin) -> None:
    c = admin.c
    h = bearer(admin.admin_token)
    carol_id, carol = funded(c, "carol", 10 * CPT)
    job = submit(c, carol, max_budget_micro=3 * CPT)
    assert balance(c, carol_id) == 7 * CPT

    r = c.http.post(f"/api/v1/admin/jobs/{job}/cancel", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["refunded_micro"] == 3 * CPT
    assert balance(c, carol_id) == 10 * CPT and escrow_balance(c, job) == 0
    seen = c.http.get(f"/api/v1/jobs/{job}", headers=bearer(carol)).json()
    assert seen["state"] == "cancelled"
    assert seen["failure_reason"] == "Cancelled by an administrator (ada)."

    again = c.http.post(f"/api/v1/admin/jobs/{job}/cancel", headers=h)
    assert again.status_code == 409 and "nothing to cancel" in again.json()["error"]["message"]
    (entry,) = audit_entries(c, admin.admin_token, target=f"job:{job}")
    assert entry["action"] == "job.cancel" and entry["detail"]["refunded_micro"] == 3 * CPT
    assert c.http.get("/api/v1/admin/ledger/audit", headers=h).json() == {"status": "ok"}


def test_requeue_a_cancelled_job_holds_its_budget_again_and_runs_it(admin: Admin) -> None:
    c = admin.c
    h = bearer(admin.admin_token)
    carol_id, carol = funded(c, "carol", 10 * CPT)
    job = submit(c, carol, max_budget_micro=3 * CPT, parameter_sets=[{}, {}])
    assert c.http.post(f"/api/v1/admin/jobs/{job}/cancel", headers=h).status_code == 200
    assert balance(c, carol_id) == 10 * CPT

    r = c.http.post(f"/api/v1/admin/jobs/{job}/requeue", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["requeued_tasks"] == [0, 1] and r.json()["escrow_micro"] == 3 * CPT
    assert balance(c, carol_id) == 7 * CPT
    state = c.http.get(f"/api/v1/jobs/{job}", headers=bearer(carol)).json()
    assert state["state"] == "queued" and state["refunded_micro"] == 0
    assert [t["state"] for t in state["tasks"]] == ["queued", "queued"]

    run_until_final(c, [job])
    done = c.http.get(f"/api/v1/admin/jobs/{job}", headers=h).json()
    assert done["state"] == "completed" and done["requeues"] == 1
    charged = done["charged_micro"]
    assert charged == 4 * 1000  # two tasks, each cross-checked on two nodes at the minimum charge
    assert done["refunded_micro"] == 3 * CPT - charged
    assert balance(c, carol_id) == 10 * CPT - charged
    assert [ch["kind"] for ch in done["charges"]] == [
        "escrow_hold",
        "escrow_refund",
        "escrow_hold",
        "task_payment",
        "task_payment",
        "escrow_refund",
    ]
    assert c.http.get("/api/v1/admin/ledger/audit", headers=h).json() == {"status": "ok"}
    (entry,) = audit_entries(c, admin.admin_token, action="job.requeue")
    assert entry["detail"]["task_indices"] == [0, 1] and entry["detail"]["held_micro"] == 3 * CPT


def test_requeue_reruns_only_the_unfinished_tasks(sqlite_admin: Admin) -> None:
    c = sqlite_admin.c
    h = bearer(sqlite_admin.admin_token)
    _, carol = funded(c, "carol", 10 * CPT)
    job = submit(c, carol, parameter_sets=[{}, {}])
    # task 0 runs to its verdict, then the job is cancelled with task 1 never run
    run_until_accepted(c, job, 1)
    assert c.http.post(f"/api/v1/admin/jobs/{job}/cancel", headers=h).status_code == 200

    r = c.http.post(f"/api/v1/admin/jobs/{job}/requeue", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["requeued_tasks"] == [1]
    run_until_final(c, [job])
    final = c.http.get(f"/api/v1/jobs/{job}", headers=bearer(carol)).json()
    assert final["state"] == "completed" and final["tasks_done"] == 2


def test_refused_job_actions_change_nothing_and_log_nothing(sqlite_admin: Admin) -> None:
    c = sqlite_admin.c
    h = bearer(sqlite_admin.admin_token)
    carol_id, carol = funded(c, "carol", 10 * CPT)
    queued = submit(c, carol)
    r = c.http.post(f"/api/v1/admin/jobs/{queued}/requeue", headers=h)
    assert r.status_code == 409 and "this one is queued" in r.json()["error"]["message"]

    done = submit(c, carol)
    run_until_final(c, [done])
    r = c.http.post(f"/api/v1/admin/jobs/{done}/requeue", headers=h)
    assert r.status_code == 409 and "this one is completed" in r.json()["error"]["message"]

    # the owner spent the budget meanwhile: the new hold is refused, the job stays cancelled
    broke = submit(c, carol, max_budget_micro=5 * CPT)
    assert c.http.post(f"/api/v1/admin/jobs/{broke}/cancel", headers=h).status_code == 200
    spend = c.http.post(
        "/api/v1/wallet/transfer",
        json={"recipient": "bob", "amount_micro": balance(c, carol_id) - CPT},
        headers=bearer(carol),
    )
    assert spend.status_code == 200, spend.text
    before = balance(c, carol_id)
    r = c.http.post(f"/api/v1/admin/jobs/{broke}/requeue", headers=h)
    assert r.status_code == 409 and "wallet holds 1 CPT" in r.json()["error"]["message"]
    assert balance(c, carol_id) == before
    assert c.http.get(f"/api/v1/jobs/{broke}", headers=bearer(carol)).json()["state"] == "cancelled"

    assert c.http.post("/api/v1/admin/jobs/nope/requeue", headers=h).status_code == 404
    assert c.http.post("/api/v1/admin/jobs/nope/cancel", headers=h).status_code == 404
    assert [e["action"] for e in audit_entries(c, sqlite_admin.admin_token)] == ["job.cancel"]
    assert audit_count(c) == 1
    assert c.http.get("/api/v1/admin/ledger/audit", headers=h).json() == {"status": "ok"}


def test_requeue_a_failed_job_reruns_its_failed_task(admin: Admin) -> None:
    c = admin.c
    h = bearer(admin.admin_token)
    carol_id, carol = funded(c, "carol", 10 * CPT)
    job = submit(c, carol, max_attempts=1)
    worker = volunteer(c)
    (grant,) = run_on_loop(c, c.coordinator.dispatcher.poll(worker.node, POLL))
    failed_run = ReportedResult(
        lease_id=grant.lease_id,
        status="error",
        exit_code=-1,
        stdout_sha256="",
        outputs=(),
        usage=ReportedUsage(0.0, 0, 0.0, 0.0),
        reason="Docker is not running on this computer.",
    )
    run_on_loop(c, c.coordinator.dispatcher.report(worker.node, [failed_run]))
    failed = c.http.get(f"/api/v1/jobs/{job}", headers=bearer(carol)).json()
    assert failed["state"] == "failed" and failed["tasks_failed"] == 1
    assert balance(c, carol_id) == 10 * CPT  # nothing was charged, all refunded

    r = c.http.post(f"/api/v1/admin/jobs/{job}/requeue", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["requeued_tasks"] == [0]
    reopened = c.http.get(f"/api/v1/jobs/{job}", headers=bearer(carol)).json()
    assert reopened["state"] == "queued" and reopened["tasks_failed"] == 0
    assert reopened["failure_reason"] == "" and reopened["tasks"][0]["attempts"] == 0

    run_until_final(c, [job])
    done = c.http.get(f"/api/v1/jobs/{job}", headers=bearer(carol)).json()
    assert done["state"] == "completed" and done["tasks_done"] == 1
    assert balance(c, carol_id) == 10 * CPT - done["charged_micro"]
    assert c.http.get("/api/v1/admin/ledger/audit", headers=h).json() == {"status": "ok"}
