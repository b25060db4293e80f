"""The audit log: every kind of admin action lands in it with who, what, to what and when, newest first,
and it can be filtered by actor, action and target (exact or by prefix)."""

from __future__ import annotations

from tests.admin.conftest import Admin
from tests.admin.helpers import audit_entries, funded, submit, volunteer
from tests.jobs.helpers import CPT
from tests.support import bearer


def test_every_action_is_logged_and_filterable(sqlite_admin: Admin) -> None:
    c = sqlite_admin.c
    h = bearer(sqlite_admin.admin_token)
    _, carol = funded(c, "carol", 10 * CPT)
    job = submit(c, carol)
    node = volunteer(c).node.id
    calls = [
        ("POST", "/api/v1/admin/ledger/grant", {"username": "bob", "amount_micro": CPT}),
        ("POST", f"/api/v1/admin/nodes/{node}/quarantine", {"reason": "wrong results"}),
        ("POST", f"/api/v1/admin/nodes/{node}/release", None),
        ("POST", f"/api/v1/admin/nodes/{node}/revoke", None),
        ("POST", f"/api/v1/admin/jobs/{job}/cancel", None),
        ("POST", f"/api/v1/admin/jobs/{job}/requeue", None),
        ("POST", "/api/v1/admin/users/bob/disable", None),
        ("POST", "/api/v1/admin/users/bob/enable", None),
        ("POST", "/api/v1/admin/users/bob/promote", None),
        ("POST", "/api/v1/admin/users/bob/demote", None),
        ("PUT", "/api/v1/admin/pricing", {"memory_micro_per_gb_second": 20}),
    ]
    for method, path, body in calls:
        r = c.http.request(method, path, json=body, headers=h)
        assert r.status_code == 200, (path, r.text)

    entries = audit_entries(c, sqlite_admin.admin_token, limit=100)
    assert [(e["action"], e["target"]) for e in reversed(entries)] == [
        ("ledger.grant", "user:bob"),
        ("node.quarantine", f"node:{node}"),
        ("node.release", f"node:{node}"),
        ("node.revoke", f"node:{node}"),
        ("job.cancel", f"job:{job}"),
        ("job.requeue", f"job:{job}"),
        ("user.disable", "user:bob"),
        ("user.enable", "user:bob"),
        ("user.promote", "user:bob"),
        ("user.demote", "user:bob"),
        ("pricing.update", "pricing"),
    ]
    assert all(e["actor"] == "ada" and e["summary"] for e in entries)
    times = [e["at"] for e in entries]
    assert times == sorted(times, reverse=True)

    def targets(**filters: object) -> list[str]:
        return [e["target"] for e in audit_entries(c, sqlite_admin.admin_token, **filters)]

    assert targets(target="node:") == [f"node:{node}"] * 3
    assert targets(target="user:bob", action="user.promote") == ["user:bob"]
    assert targets(actor="bob") == []
    page = c.http.get("/api/v1/admin/audit-log", params={"limit": 2, "offset": 1}, headers=h).json()
    # 11 actions, and the console's entry for the test's admin (made with create-admin)
    assert page["total"] == 12 and [e["action"] for e in page["entries"]] == [
        "user.demote",
        "user.promote",
    ]
    bad = c.http.get("/api/v1/admin/audit-log", params={"action": "user.delete"}, headers=h)
    assert bad.status_code == 400 and "Unknown action" in bad.json()["error"]["message"]
