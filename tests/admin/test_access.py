"""Who may call the admin API: every admin endpoint answers 401 without a sign-in and 403 to a plain user,
each with a sentence saying what to do; the overview is open to every signed-in user."""

from __future__ import annotations

from tests.admin.conftest import Admin
from tests.support import bearer

JOB = "00000000-0000-0000-0000-000000000000"
NODE = "00000000-0000-0000-0000-000000000001"
ADMIN_ENDPOINTS = [
    ("GET", "/api/v1/admin/nodes", None),
    ("GET", f"/api/v1/admin/nodes/{NODE}", None),
    ("POST", f"/api/v1/admin/nodes/{NODE}/quarantine", {"reason": "bad results"}),
    ("POST", f"/api/v1/admin/nodes/{NODE}/release", None),
    ("POST", f"/api/v1/admin/nodes/{NODE}/revoke", None),
    ("GET", "/api/v1/admin/jobs", None),
    ("GET", f"/api/v1/admin/jobs/{JOB}", None),
    ("GET", f"/api/v1/admin/jobs/{JOB}/logs", None),
    ("POST", f"/api/v1/admin/jobs/{JOB}/cancel", None),
    ("POST", f"/api/v1/admin/jobs/{JOB}/requeue", None),
    ("GET", "/api/v1/admin/users", None),
    ("POST", "/api/v1/admin/users/bob/disable", None),
    ("POST", "/api/v1/admin/users/bob/enable", None),
    ("POST", "/api/v1/admin/users/bob/promote", None),
    ("POST", "/api/v1/admin/users/bob/demote", None),
    ("GET", "/api/v1/admin/ledger/accounts", None),
    ("GET", "/api/v1/admin/ledger/statement/bob", None),
    ("GET", "/api/v1/admin/ledger/grants", None),
    ("POST", "/api/v1/admin/ledger/grant", {"username": "bob", "amount_micro": 1}),
    ("GET", "/api/v1/admin/ledger/audit", None),
    ("GET", "/api/v1/admin/pricing", None),
    ("PUT", "/api/v1/admin/pricing", {"platform_fee_bps": 0}),
    ("GET", "/api/v1/admin/audit-log", None),
]


def test_unauthenticated_callers_get_401_and_plain_users_403(sqlite_admin: Admin) -> None:
    c = sqlite_admin.c
    before = c.http.get("/api/v1/admin/audit-log", headers=bearer(sqlite_admin.admin_token))
    for method, path, body in ADMIN_ENDPOINTS:
        anonymous = c.http.request(method, path, json=body)
        assert anonymous.status_code == 401, (method, path)
        assert anonymous.headers["WWW-Authenticate"] == "Bearer"
        assert anonymous.json()["error"]["code"] == "UNAUTHENTICATED"
        assert "Sign in first" in anonymous.json()["error"]["message"]

        forged = c.http.request(method, path, json=body, headers=bearer("not-a-token"))
        assert forged.status_code == 401, (method, path)
        assert "Sign in again" in forged.json()["error"]["message"]

        plain = c.http.request(method, path, json=body, headers=bearer(sqlite_admin.bob_token))
        assert plain.status_code == 403, (method, path)
        error = plain.json()["error"]
        assert error["code"] == "PERMISSION_DENIED"
        assert "administrator account" in error["message"] and "'bob'" in error["message"]

    # nothing a refused caller sent changed anything
    after = c.http.get("/api/v1/admin/audit-log", headers=bearer(sqlite_admin.admin_token))
    assert after.json() == before.json()
    assert [e["action"] for e in after.json()["entries"]] == [
        "user.promote"
    ]  # the test's admin set-up
    me = c.http.get("/api/v1/auth/me", headers=bearer(sqlite_admin.bob_token))
    assert me.json()["role"] == "user"
    balance = c.http.get("/api/v1/wallet/balance", headers=bearer(sqlite_admin.bob_token))
    assert balance.json()["balance_micro"] == 0


def test_the_overview_is_for_every_signed_in_user(sqlite_admin: Admin) -> None:
    c = sqlite_admin.c
    assert c.http.get("/api/v1/overview").status_code == 401
    r = c.http.get("/api/v1/overview", headers=bearer(sqlite_admin.bob_token))
    assert r.status_code == 200
    body = r.json()
    assert len(body["series"]) == 60
    assert body["series"][0]["at"] < body["series"][-1]["at"]
    assert body["jobs_queued"] == 0 and body["nodes_online"] == 0


def test_metrics_need_no_sign_in(sqlite_admin: Admin) -> None:
    r = sqlite_admin.c.http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "hivemind_leases_granted_total 0.0" in r.text
