"""Accounts: list and filter; disable and enable (sign-in, tokens, refresh and node credentials stop at
once); promote and demote (a demoted admin's token loses its powers at once, also after a restart); the
rules an admin cannot break; every action in the audit log and every refusal leaving nothing behind."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import httpx
import pytest
from sqlmodel import select

from coordinator.accounts.models import User
from shared_proto.v1 import nodes_pb2, users_pb2
from tests.admin.conftest import Admin
from tests.admin.helpers import audit_count, audit_entries, error
from tests.support import PASSWORD, RunningCoordinator, auth, bearer


def test_list_and_filter_users(admin: Admin) -> None:
    c = admin.c
    c.signup("carol")
    h = bearer(admin.admin_token)
    everyone = c.http.get("/api/v1/admin/users", headers=h).json()
    assert everyone["total"] == 3
    assert [u["username"] for u in everyone["users"]] == ["ada", "bob", "carol"]
    bob = everyone["users"][1]
    assert bob == {
        "user_id": admin.bob_id,
        "username": "bob",
        "email": "bob@example.org",
        "role": "user",
        "disabled": False,
        "created_at": bob["created_at"],
        "balance_micro": 0,
        "nodes": 0,
        "jobs": 0,
    }
    admins = c.http.get("/api/v1/admin/users", params={"role": "admin"}, headers=h).json()
    assert [u["username"] for u in admins["users"]] == ["ada"]
    found = c.http.get("/api/v1/admin/users", params={"q": "CAR"}, headers=h).json()
    assert [u["username"] for u in found["users"]] == ["carol"]
    page = c.http.get("/api/v1/admin/users", params={"limit": 1, "offset": 1}, headers=h).json()
    assert page["total"] == 3 and [u["username"] for u in page["users"]] == ["bob"]
    bad = c.http.get("/api/v1/admin/users", params={"role": "root"}, headers=h)
    assert bad.status_code == 422


def test_disable_stops_sign_in_tokens_refresh_and_nodes_then_enable_restores(
    admin: Admin,
) -> None:
    c = admin.c
    h = bearer(admin.admin_token)
    login = c.http.post("/api/v1/auth/login", json={"username": "bob", "password": PASSWORD})
    refresh_token = login.json()["refresh_token"]
    node = c.nodes.RegisterWorkerNode(
        nodes_pb2.RegisterWorkerNodeRequest(hostname="bob-pc", cpu_cores=4, memory_gb=8.0),
        metadata=auth(admin.bob_token),
    )

    r = c.http.post("/api/v1/admin/users/bob/disable", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["disabled"] is True

    # the access token bob holds stops working at once, on REST and gRPC
    me = c.http.get("/api/v1/auth/me", headers=bearer(admin.bob_token))
    assert error(me) == (
        401,
        "UNAUTHENTICATED",
        "This account is disabled. Contact the coordinator's operator.",
    )
    with pytest.raises(grpc.RpcError) as rpc:
        c.nodes.RegisterWorkerNode(
            nodes_pb2.RegisterWorkerNodeRequest(hostname="x", cpu_cores=1, memory_gb=1.0),
            metadata=auth(admin.bob_token),
        )
    assert rpc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # no new sign-in, no refresh, no node
    relogin = c.http.post("/api/v1/auth/login", json={"username": "bob", "password": PASSWORD})
    assert relogin.status_code == 401 and "disabled" in relogin.json()["error"]["message"]
    refreshed = c.http.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
    assert refreshed.status_code == 401
    with pytest.raises(grpc.RpcError) as rpc:
        c.nodes.HealthCheck(nodes_pb2.HealthCheckRequest(), metadata=auth(node.node_credential))
    assert rpc.value.code() == grpc.StatusCode.UNAUTHENTICATED

    r = c.http.post("/api/v1/admin/users/bob/enable", headers=h)
    assert r.status_code == 200 and r.json()["disabled"] is False
    again = c.http.post("/api/v1/auth/login", json={"username": "bob", "password": PASSWORD})
    assert again.status_code == 200
    assert c.http.get("/api/v1/auth/me", headers=bearer(admin.bob_token)).status_code == 200

    entries = audit_entries(c, admin.admin_token)
    assert [(e["actor"], e["action"], e["target"]) for e in entries] == [
        ("ada", "user.enable", "user:bob"),
        ("ada", "user.disable", "user:bob"),
    ]


def test_promote_and_demote_take_effect_for_tokens_already_issued(admin: Admin) -> None:
    c = admin.c
    h = bearer(admin.admin_token)
    r = c.http.post("/api/v1/admin/users/bob/promote", headers=h)
    assert r.status_code == 200 and r.json()["role"] == "admin"
    # a token never grants more than it says: bob signs in again to act as an admin
    assert c.http.get("/api/v1/admin/users", headers=bearer(admin.bob_token)).status_code == 403
    bob_admin = c.login("bob").token
    assert c.http.get("/api/v1/admin/users", headers=bearer(bob_admin)).status_code == 200

    r = c.http.post("/api/v1/admin/users/bob/demote", headers=h)
    assert r.status_code == 200 and r.json()["role"] == "user"
    # the admin token bob still holds is a plain user's from now on
    denied = c.http.get("/api/v1/admin/users", headers=bearer(bob_admin))
    assert denied.status_code == 403
    assert c.http.get("/api/v1/auth/me", headers=bearer(bob_admin)).json()["role"] == "user"

    actions = [(e["action"], e["detail"].get("to")) for e in audit_entries(c, admin.admin_token)]
    assert actions == [("user.demote", "user"), ("user.promote", "admin")]


def test_refused_account_actions_change_nothing_and_log_nothing(admin: Admin) -> None:
    c = admin.c
    h = bearer(admin.admin_token)
    refusals = [
        ("/api/v1/admin/users/ada/disable", 409, "cannot disable your own account"),
        ("/api/v1/admin/users/ada/demote", 409, "cannot demote yourself"),
        ("/api/v1/admin/users/bob/enable", 409, "already enabled"),
        ("/api/v1/admin/users/bob/demote", 409, "already a user"),
        ("/api/v1/admin/users/ada/promote", 409, "cannot promote yourself"),
        ("/api/v1/admin/users/nobody/disable", 404, "no user named 'nobody'"),
    ]
    for path, status, words in refusals:
        r = c.http.post(path, headers=h)
        assert r.status_code == status, (path, r.text)
        assert words in r.json()["error"]["message"], (path, r.text)
    assert audit_count(c) == 0
    users = c.http.get("/api/v1/admin/users", headers=h).json()["users"]
    assert [(u["username"], u["role"], u["disabled"]) for u in users] == [
        ("ada", "admin", False),
        ("bob", "user", False),
    ]


def test_an_admin_demoted_elsewhere_cannot_act_with_an_old_token(sqlite_admin: Admin) -> None:
    """Another coordinator process demoted ada (only the database knows): her token still says admin, and
    every action is refused inside its own transaction, writing nothing."""
    c = sqlite_admin.c
    with c.coordinator.db.write() as session:
        ada = session.exec(select(User).where(User.username == "ada")).one()
        ada.role = "user"
        session.add(ada)
    h = bearer(sqlite_admin.admin_token)
    for method, path, body in [
        ("POST", "/api/v1/admin/users/bob/disable", None),
        ("POST", "/api/v1/admin/ledger/grant", {"username": "bob", "amount_micro": 5}),
        ("PUT", "/api/v1/admin/pricing", {"platform_fee_bps": 0}),
    ]:
        r = c.http.request(method, path, json=body, headers=h)
        assert r.status_code == 403, (path, r.text)
        assert "rights were removed" in r.json()["error"]["message"]
    assert audit_count(c) == 0
    balance = c.http.get("/api/v1/wallet/balance", headers=bearer(sqlite_admin.bob_token))
    assert balance.json()["balance_micro"] == 0


def test_a_demotion_outlives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    with RunningCoordinator.start(db_url=url, data_dir=tmp_path) as c:
        ada = c.make_admin("ada")
        c.register("bob")
        c.coordinator.accounts.create_admin("bob", "bob@example.org", PASSWORD)
        bob_admin = c.login("bob").token
        assert c.http.post("/api/v1/admin/users/bob/demote", headers=bearer(ada)).status_code == 200
        c.http.post("/api/v1/admin/users/ada/promote", headers=bearer(ada))  # refused: herself
    with RunningCoordinator.start(db_url=url, data_dir=tmp_path) as c:
        assert c.http.get("/api/v1/admin/users", headers=bearer(bob_admin)).status_code == 403
        reply = c.users.Login(users_pb2.LoginRequest(username="bob", password=PASSWORD))
        assert reply.role == "user"


def test_two_admins_demoting_each_other_at_once_leave_one_admin(admin: Admin) -> None:
    c = admin.c
    c.coordinator.accounts.create_admin("bob", "bob@example.org", PASSWORD)
    tokens = {"ada": admin.admin_token, "bob": c.login("bob").token}
    barrier = threading.Barrier(2)
    answers: dict[str, int] = {}

    def demote(actor: str, target: str) -> None:
        with httpx.Client(base_url=c.http_base, timeout=30) as client:
            barrier.wait()
            r = client.post(f"/api/v1/admin/users/{target}/demote", headers=bearer(tokens[actor]))
            answers[actor] = r.status_code

    threads = [
        threading.Thread(target=demote, args=("ada", "bob")),
        threading.Thread(target=demote, args=("bob", "ada")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers.values()) == [200, 403], answers
    with c.coordinator.db.read() as session:
        roles = {u.username: u.role for u in session.exec(select(User))}
    assert sorted(roles.values()) == ["admin", "user"]
    assert audit_count(c) == 1


def test_create_admin_at_the_console_is_in_the_audit_log(admin: Admin) -> None:
    c = admin.c
    c.register("dora")
    c.coordinator.accounts.create_admin("dora", "dora@example.org", PASSWORD)  # a promotion
    c.coordinator.accounts.create_admin("cleo", "cleo@example.org", PASSWORD)  # a new account
    log = c.http.get(
        "/api/v1/admin/audit-log",
        params={"action": "user.promote"},
        headers=bearer(admin.admin_token),
    ).json()
    entries = {e["target"]: e for e in log["entries"]}
    assert (
        entries["user:dora"]["summary"] == "dora was made an administrator at the server console."
    )
    assert entries["user:cleo"]["summary"] == (
        "cleo was created as an administrator at the server console."
    )
    assert entries["user:dora"]["actor"] == "dora" and entries["user:cleo"]["actor"] == "cleo"
    assert c.login("dora").role == "admin" and c.login("cleo").role == "admin"
