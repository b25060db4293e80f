"""The node pool as an admin sees it: list and filter, inspect (hardware, trust, leases, earnings, history),
and quarantine, release and revoke - each changing what the node can do at once, each in the audit log."""

from __future__ import annotations

from typing import Any

from coordinator.scheduling.service import PollRequest
from tests.admin.conftest import Admin
from tests.admin.helpers import (
    audit_count,
    audit_entries,
    funded,
    run_until_final,
    submit,
    volunteer,
)
from tests.jobs.helpers import StandInWorker, run_on_loop
from tests.support import bearer

POLL = PollRequest(
    max_tasks=1,
    free_cpu_cores=8,
    free_memory_gb=16,
    free_gpus=0,
    wait_s=0,
    docker_available=True,
    allow_network=False,
)


def poll(worker: StandInWorker) -> list[Any]:
    c = worker.c
    return run_on_loop(c, c.coordinator.dispatcher.poll(worker.node, POLL))


def test_list_filter_and_inspect_nodes(admin: Admin) -> None:
    c = admin.c
    h = bearer(admin.admin_token)
    _, token = funded(c, "carol")
    job = submit(c, token)
    run_until_final(c, [job])

    nodes = c.http.get("/api/v1/admin/nodes", headers=h).json()
    assert nodes["total"] == 2  # the job's replica and its cross-check, on two volunteers' nodes
    first = nodes["nodes"][0]
    assert first["online"] is True and first["quarantined"] is False
    assert first["valid_results"] == 1 and first["valid_streak"] == 1 and first["trusted"] is False
    assert (
        first["owner"].startswith("vol") and first["cpu_cores"] == 8 and first["active_leases"] == 0
    )

    def names(**params: Any) -> list[str]:
        r = c.http.get("/api/v1/admin/nodes", params=params, headers=h)
        assert r.status_code == 200, r.text
        return [n["owner"] for n in r.json()["nodes"]]

    assert names(owner=first["owner"]) == [first["owner"]]
    assert len(names(status="online")) == 2 and names(status="offline") == []
    assert names(gpu=True) == [] and len(names(gpu=False)) == 2
    assert len(names(min_trust=1)) == 2 and names(min_trust=2) == []
    assert names(quarantined=True) == []
    bad = c.http.get("/api/v1/admin/nodes", params={"status": "asleep"}, headers=h)
    assert (
        bad.status_code == 400 and "Unknown node status 'asleep'" in bad.json()["error"]["message"]
    )

    detail = c.http.get(f"/api/v1/admin/nodes/{first['id']}", headers=h).json()
    assert detail["hostname"] == f"{first['owner']}-pc" and detail["cpu_score"] == 800.0
    assert detail["current_leases"] == []
    (result,) = detail["recent_results"]
    assert (
        result["job_id"] == job and result["state"] == "valid" and result["status"] == "succeeded"
    )
    # the minimum charge of 1000 less the 10 % fee
    assert detail["earnings_micro"] == result["paid_micro"] == 900
    assert detail["trust_streak_needed"] == 10 and detail["quarantine_after"] == 3
    missing = c.http.get("/api/v1/admin/nodes/no-such-node", headers=h)
    assert missing.status_code == 404


def test_a_quarantined_node_gets_no_leases_until_released(admin: Admin) -> None:
    c = admin.c
    h = bearer(admin.admin_token)
    _, token = funded(c, "carol")
    submit(c, token)
    worker = volunteer(c)

    r = c.http.post(
        f"/api/v1/admin/nodes/{worker.node.id}/quarantine",
        json={"reason": "Its results disagree with everyone's."},
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert r.json()["quarantined"] is True
    assert r.json()["quarantine_reason"] == "By ada: Its results disagree with everyone's."
    assert poll(worker) == []  # the job is queued, yet this node gets nothing
    listed = c.http.get("/api/v1/admin/nodes", params={"quarantined": True}, headers=h).json()
    assert [n["id"] for n in listed["nodes"]] == [worker.node.id]

    again = c.http.post(
        f"/api/v1/admin/nodes/{worker.node.id}/quarantine", json={"reason": "again"}, headers=h
    )
    assert again.status_code == 409 and "already quarantined" in again.json()["error"]["message"]

    r = c.http.post(f"/api/v1/admin/nodes/{worker.node.id}/release", headers=h)
    assert r.status_code == 200 and r.json()["quarantined"] is False
    assert r.json()["valid_streak"] == 0
    assert len(poll(worker)) == 1  # back in the pool

    history = c.http.get(f"/api/v1/admin/nodes/{worker.node.id}", headers=h).json()["history"]
    assert [e["action"] for e in history] == ["node.release", "node.quarantine"]
    assert history[1]["detail"]["reason"] == "Its results disagree with everyone's."


def test_revoke_ends_the_node_credential(admin: Admin) -> None:
    c = admin.c
    h = bearer(admin.admin_token)
    worker = volunteer(c)
    r = c.http.post(f"/api/v1/admin/nodes/{worker.node.id}/revoke", headers=h)
    assert r.status_code == 200
    assert r.json()["revoked"] is True and r.json()["online"] is False
    twice = c.http.post(f"/api/v1/admin/nodes/{worker.node.id}/revoke", headers=h)
    assert twice.status_code == 409
    (entry,) = audit_entries(c, admin.admin_token, action="node.revoke")
    assert entry["target"] == f"node:{worker.node.id}" and entry["actor"] == "ada"


def test_refused_node_actions_log_nothing(sqlite_admin: Admin) -> None:
    c = sqlite_admin.c
    h = bearer(sqlite_admin.admin_token)
    worker = volunteer(c)
    node = worker.node.id
    cases = [
        (f"/api/v1/admin/nodes/{node}/quarantine", {"reason": ""}, 400),
        (f"/api/v1/admin/nodes/{node}/quarantine", {"reason": "x" * 501}, 422),
        (f"/api/v1/admin/nodes/{node}/quarantine", {"reason": " \t "}, 400),
        (f"/api/v1/admin/nodes/{node}/release", None, 409),
        ("/api/v1/admin/nodes/nope/quarantine", {"reason": "bad"}, 404),
        ("/api/v1/admin/nodes/nope/revoke", None, 404),
    ]
    for path, body, status in cases:
        r = c.http.post(path, json=body, headers=h)
        assert r.status_code == status, (path, r.text)
    assert audit_count(c) == 0
    detail = c.http.get(f"/api/v1/admin/nodes/{node}", headers=h).json()
    assert detail["quarantined"] is False and detail["revoked"] is False
