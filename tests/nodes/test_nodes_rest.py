"""The owners' REST API for nodes (/api/v1/nodes) against a real coordinator: who may see and revoke what."""

from __future__ import annotations

import uuid

from tests.nodes.helpers import register_node, report
from tests.support import RunningCoordinator, bearer


def test_list_and_get_need_a_signed_in_user(sqlite_coordinator: RunningCoordinator) -> None:
    c = sqlite_coordinator
    _, ada = c.signup("ada")
    reg = register_node(c, ada)
    for path in ("/api/v1/nodes", f"/api/v1/nodes/{reg.node_id}"):
        r = c.http.get(path)
        assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHENTICATED"
        r = c.http.get(
            path, headers=bearer(reg.node_credential)
        )  # a node credential is not a user token
        assert r.status_code == 401


def test_list_shows_only_the_callers_nodes_oldest_first(coordinator: RunningCoordinator) -> None:
    _, ada = coordinator.signup("ada")
    _, bob = coordinator.signup("bob")
    ids = [register_node(coordinator, ada, hostname=f"ada-{i}").node_id for i in range(3)]
    register_node(coordinator, bob, hostname="bob-1")
    nodes = coordinator.http.get("/api/v1/nodes", headers=bearer(ada)).json()["nodes"]
    assert [n["hostname"] for n in nodes] == ["ada-0", "ada-1", "ada-2"]
    assert {n["id"] for n in nodes} == set(ids)


def test_owner_revokes_and_others_may_not(coordinator: RunningCoordinator) -> None:
    _, ada = coordinator.signup("ada")
    _, bob = coordinator.signup("bob")
    reg = register_node(coordinator, ada)

    for method, path in (("GET", ""), ("POST", "/revoke")):
        r = coordinator.http.request(
            method, f"/api/v1/nodes/{reg.node_id}{path}", headers=bearer(bob)
        )
        assert r.status_code == 403, r.text
        assert (
            r.json()["error"]["code"] == "PERMISSION_DENIED"
            and "another account" in r.json()["error"]["message"]
        )
    assert report(coordinator, reg.node_credential).success  # bob's attempt changed nothing

    r = coordinator.http.post(f"/api/v1/nodes/{reg.node_id}/revoke", headers=bearer(ada))
    assert r.status_code == 200
    body = r.json()
    assert (
        body["revoked"] is True
        and body["revoked_at"]
        and body["online"] is False
        and body["status"] == "offline"
    )
    # Revoking again is harmless and keeps the first time.
    again = coordinator.http.post(f"/api/v1/nodes/{reg.node_id}/revoke", headers=bearer(ada)).json()
    assert again["revoked_at"] == body["revoked_at"]


def test_admin_may_see_and_revoke_any_node(coordinator: RunningCoordinator) -> None:
    _, ada = coordinator.signup("ada")
    root = coordinator.make_admin("root")
    reg = register_node(coordinator, ada)
    seen = coordinator.http.get(f"/api/v1/nodes/{reg.node_id}", headers=bearer(root))
    assert seen.status_code == 200 and seen.json()["hostname"] == "ada-workstation"
    assert coordinator.http.get("/api/v1/nodes", headers=bearer(root)).json() == {
        "nodes": []
    }  # only own nodes
    r = coordinator.http.post(f"/api/v1/nodes/{reg.node_id}/revoke", headers=bearer(root))
    assert r.status_code == 200 and r.json()["revoked"] is True
    owner_view = coordinator.http.get(f"/api/v1/nodes/{reg.node_id}", headers=bearer(ada)).json()
    assert owner_view["revoked"] is True


def test_unknown_node_is_404(sqlite_coordinator: RunningCoordinator) -> None:
    c = sqlite_coordinator
    _, ada = c.signup("ada")
    for node_id in (str(uuid.uuid4()), "x" * 300):
        r = c.http.get(f"/api/v1/nodes/{node_id}", headers=bearer(ada))
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
        r = c.http.post(f"/api/v1/nodes/{node_id}/revoke", headers=bearer(ada))
        assert r.status_code == 404
