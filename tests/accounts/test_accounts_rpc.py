"""UserService over real gRPC on both databases: registration rules, sign-in, refresh rotation, rate limits."""

from __future__ import annotations

import grpc
import pytest
from sqlmodel import func, select

from coordinator.accounts.models import RefreshToken, User
from coordinator.ledger.models import LedgerAccount
from shared_proto.v1 import tokens_pb2, users_pb2
from tests.support import PASSWORD, RunningCoordinator, auth


def _count(running: RunningCoordinator, model: type) -> int:
    with running.coordinator.db.read() as s:
        return int(s.exec(select(func.count()).select_from(model)).one())


def _code(exc: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    return exc.value.code()  # type: ignore[attr-defined,no-any-return]


def test_register_creates_user_and_wallet(coordinator: RunningCoordinator) -> None:
    user_id = coordinator.register("ada")
    assert user_id > 0
    with coordinator.coordinator.db.read() as s:
        user = s.exec(select(User).where(User.username == "ada")).one()
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash
        wallet = s.exec(select(LedgerAccount).where(LedgerAccount.user_id == user_id)).one()
        assert wallet.balance_micro == 0


@pytest.mark.parametrize(
    ("username", "email", "password", "needle"),
    [
        ("ab", "ab@example.org", PASSWORD, "3 to 32"),
        ("x" * 33, "x@example.org", PASSWORD, "3 to 32"),
        ("Ada", "ada@example.org", PASSWORD, "lowercase"),
        ("ada!", "ada@example.org", PASSWORD, "lowercase"),
        ("", "ada@example.org", PASSWORD, "3 to 32"),
        ("ada", "not-an-email", PASSWORD, "valid email"),
        ("ada", "", PASSWORD, "valid email"),
        ("ada", "a" * 300 + "@example.org", PASSWORD, "valid email"),
        ("ada", "ada@example.org", "short", "at least 10"),
        ("ada", "ada@example.org", "p" * 5000, "at most"),
    ],
)
def test_register_refuses_bad_input_and_writes_nothing(
    sqlite_coordinator: RunningCoordinator, username: str, email: str, password: str, needle: str
) -> None:
    with pytest.raises(grpc.RpcError) as exc:
        sqlite_coordinator.users.Register(
            users_pb2.RegisterRequest(username=username, email=email, password=password)
        )
    assert _code(exc) == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in exc.value.details()  # type: ignore[attr-defined]
    assert _count(sqlite_coordinator, User) == 0
    assert _count(sqlite_coordinator, LedgerAccount) == 0


def test_duplicate_username_is_already_exists(coordinator: RunningCoordinator) -> None:
    coordinator.register("ada")
    with pytest.raises(grpc.RpcError) as exc:
        coordinator.register("ada", email="other@example.org")
    assert _code(exc) == grpc.StatusCode.ALREADY_EXISTS
    assert "taken" in exc.value.details()  # type: ignore[attr-defined]
    assert _count(coordinator, User) == 1


def test_login_and_authenticated_call(coordinator: RunningCoordinator) -> None:
    coordinator.register("ada")
    reply = coordinator.login("ada")
    assert reply.success and reply.token and reply.refresh_token.startswith("hmr_")
    assert reply.expires_in == 900 and reply.role == "user"
    balance = coordinator.tokens.GetBalance(
        tokens_pb2.GetBalanceRequest(), metadata=auth(reply.token)
    )
    assert balance.balance_micro == 0 and balance.username == "ada"


def test_seed_style_token_field_is_accepted(sqlite_coordinator: RunningCoordinator) -> None:
    _, token = sqlite_coordinator.signup("ada")
    reply = sqlite_coordinator.tokens.GetBalance(tokens_pb2.GetBalanceRequest(token=token))
    assert reply.username == "ada"


def test_wrong_password_is_unauthenticated(coordinator: RunningCoordinator) -> None:
    coordinator.register("ada")
    for username, password in (("ada", "wrong password!"), ("nobody", PASSWORD)):
        with pytest.raises(grpc.RpcError) as exc:
            coordinator.login(username, password)
        assert _code(exc) == grpc.StatusCode.UNAUTHENTICATED
        assert "Wrong username or password" in exc.value.details()  # type: ignore[attr-defined]


def test_refresh_rotates_and_reuse_revokes_the_family(coordinator: RunningCoordinator) -> None:
    coordinator.register("ada")
    first = coordinator.login("ada")
    second = coordinator.users.RefreshToken(
        users_pb2.RefreshTokenRequest(refresh_token=first.refresh_token)
    )
    assert second.refresh_token != first.refresh_token and second.token
    # The used token is refused, and its reuse also kills the token that replaced it.
    with pytest.raises(grpc.RpcError) as exc:
        coordinator.users.RefreshToken(
            users_pb2.RefreshTokenRequest(refresh_token=first.refresh_token)
        )
    assert _code(exc) == grpc.StatusCode.UNAUTHENTICATED
    assert "already used" in exc.value.details()  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as exc:
        coordinator.users.RefreshToken(
            users_pb2.RefreshTokenRequest(refresh_token=second.refresh_token)
        )
    assert _code(exc) == grpc.StatusCode.UNAUTHENTICATED
    with coordinator.coordinator.db.read() as s:
        assert all(row.revoked_at or row.used_at for row in s.exec(select(RefreshToken)))


def test_failed_logins_are_rate_limited_per_username(
    sqlite_coordinator: RunningCoordinator,
) -> None:
    sqlite_coordinator.register("ada")
    for _ in range(5):
        with pytest.raises(grpc.RpcError):
            sqlite_coordinator.login("ada", "wrong password!")
    with pytest.raises(grpc.RpcError) as exc:
        sqlite_coordinator.login("ada")  # even the right password waits out the window
    assert _code(exc) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Try again in" in exc.value.details()  # type: ignore[attr-defined]


def test_failed_logins_are_rate_limited_per_address(sqlite_coordinator: RunningCoordinator) -> None:
    sqlite_coordinator.register("ada")
    for i in range(20):  # spread over many usernames: only the address limit can trip
        with pytest.raises(grpc.RpcError):
            sqlite_coordinator.login(f"user{i:02d}", "wrong password!")
    with pytest.raises(grpc.RpcError) as exc:
        sqlite_coordinator.login("ada")
    assert _code(exc) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "network address" in exc.value.details()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", "Bearer"),),
        (("authorization", "Bearer not.a.jwt"),),
        (("authorization", "Basic YWRhOnB3"),),
        # signed with another secret
        (
            (
                "authorization",
                "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIiwibmFtZSI6ImFkYSIsInJvbGUiOiJhZG1pbiIsImlzcyI6ImhpdmVtaW5kLWNvb3JkaW5hdG9yIiwiZXhwIjo0MTAyNDQ0ODAwfQ.c2lnbmVkLXdpdGgtYW5vdGhlci1zZWNyZXQtMDEyMzQ1Njc",
            ),
        ),
    ],
)
def test_missing_or_forged_token_is_unauthenticated(
    sqlite_coordinator: RunningCoordinator, metadata: tuple[tuple[str, str], ...]
) -> None:
    with pytest.raises(grpc.RpcError) as exc:
        sqlite_coordinator.tokens.GetBalance(tokens_pb2.GetBalanceRequest(), metadata=metadata)
    assert _code(exc) == grpc.StatusCode.UNAUTHENTICATED
    assert "Sign in" in exc.value.details()  # type: ignore[attr-defined]
