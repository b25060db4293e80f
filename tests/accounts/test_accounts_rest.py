"""The REST mirror of UserService, against a real coordinator over HTTP."""

from __future__ import annotations

from datetime import timedelta

from coordinator.accounts.tokens import TokenIssuer
from coordinator.clock import utcnow
from tests.support import PASSWORD, TEST_JWT_SECRET, RunningCoordinator, bearer


def _register(c: RunningCoordinator, username: str = "ada", **extra: str) -> int:
    body = {"username": username, "email": f"{username}@example.org", "password": PASSWORD} | extra
    return c.http.post("/api/v1/auth/register", json=body).status_code


def test_register_login_me_refresh(coordinator: RunningCoordinator) -> None:
    assert _register(coordinator) == 201
    r = coordinator.http.post("/api/v1/auth/login", json={"username": "ada", "password": PASSWORD})
    assert r.status_code == 200
    tokens = r.json()
    me = coordinator.http.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200 and me.json()["username"] == "ada" and me.json()["role"] == "user"
    r2 = coordinator.http.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert r2.status_code == 200 and r2.json()["refresh_token"] != tokens["refresh_token"]
    again = coordinator.http.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert again.status_code == 401 and "already used" in again.json()["error"]["message"]


def test_duplicate_is_409_and_bad_input_is_400(sqlite_coordinator: RunningCoordinator) -> None:
    assert _register(sqlite_coordinator) == 201
    dup = sqlite_coordinator.http.post(
        "/api/v1/auth/register",
        json={"username": "ada", "email": "b@example.org", "password": PASSWORD},
    )
    assert dup.status_code == 409
    assert dup.json()["error"] == {
        "code": "ALREADY_EXISTS",
        "message": dup.json()["error"]["message"],
    }
    bad = sqlite_coordinator.http.post(
        "/api/v1/auth/register",
        json={"username": "UPPER", "email": "b@example.org", "password": PASSWORD},
    )
    assert bad.status_code == 400 and "lowercase" in bad.json()["error"]["message"]
    huge = sqlite_coordinator.http.post(
        "/api/v1/auth/register",
        json={"username": "x" * 5000, "email": "b@example.org", "password": PASSWORD},
    )
    assert huge.status_code == 422 and "username" in huge.json()["error"]["message"]
    missing = sqlite_coordinator.http.post("/api/v1/auth/register", json={"username": "bob"})
    assert missing.status_code == 422
    garbage = sqlite_coordinator.http.post(
        "/api/v1/auth/register",
        content=b"\xff\x00not json",
        headers={"content-type": "application/json"},
    )
    assert garbage.status_code == 422


def test_rate_limit_is_429_with_retry_after(sqlite_coordinator: RunningCoordinator) -> None:
    assert _register(sqlite_coordinator) == 201
    for _ in range(5):
        r = sqlite_coordinator.http.post(
            "/api/v1/auth/login", json={"username": "ada", "password": "nope nope nope"}
        )
        assert r.status_code == 401
    r = sqlite_coordinator.http.post(
        "/api/v1/auth/login", json={"username": "ada", "password": PASSWORD}
    )
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) > 0
    assert "Try again in" in r.json()["error"]["message"]


def test_missing_expired_and_forged_tokens_are_401(sqlite_coordinator: RunningCoordinator) -> None:
    _register(sqlite_coordinator)
    user_id = 1
    expired = TokenIssuer(TEST_JWT_SECRET, 60, lambda: utcnow() - timedelta(hours=2)).issue(
        user_id, "ada", "user"
    )
    forged = TokenIssuer("another-secret-" + "y" * 40, 60, utcnow).issue(user_id, "ada", "admin")
    cases = {
        "": "Sign in first",
        expired: "expired",
        forged: "not valid",
        "garbage": "not valid",
    }
    for token, needle in cases.items():
        headers = bearer(token) if token else {}
        r = sqlite_coordinator.http.get("/api/v1/auth/me", headers=headers)
        assert r.status_code == 401, token
        assert needle in r.json()["error"]["message"]
        assert r.headers["WWW-Authenticate"] == "Bearer"


def test_openapi_and_docs_are_served(sqlite_coordinator: RunningCoordinator) -> None:
    spec = sqlite_coordinator.http.get("/openapi.json").json()
    assert "/api/v1/auth/login" in spec["paths"]
    assert sqlite_coordinator.http.get("/docs").status_code == 200
