"""TokenService over gRPC and the wallet/admin REST routes, against a real coordinator on both databases."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from coordinator.clock import utcnow
from coordinator.ledger import service as ledger
from shared_proto.v1 import tokens_pb2 as pb
from tests.ledger.helpers import CPT
from tests.support import RunningCoordinator, auth, bearer


def fund(c: RunningCoordinator, user_id: int, amount_micro: int) -> None:
    with c.coordinator.db.write() as session:
        ledger.grant(session, user_id, amount_micro, now=utcnow())


def code_of(call: object) -> tuple[grpc.StatusCode, str]:
    assert isinstance(call, grpc.RpcError)
    return call.code(), call.details() or ""  # type: ignore[attr-defined]


def test_transfer_balance_and_history(coordinator: RunningCoordinator) -> None:
    alice, alice_token = coordinator.signup("alice")
    coordinator.signup("bob")
    fund(coordinator, alice, 10 * CPT)
    reply = coordinator.tokens.Transfer(
        pb.TransferRequest(recipient="bob", amount_micro=2_500_000, memo="lunch"),
        metadata=auth(alice_token),
    )
    assert reply.success and reply.new_balance_micro == 7_500_000 and reply.transaction_id
    assert reply.message == "Sent 2.5 CPT to bob."
    mine = coordinator.tokens.GetBalance(pb.GetBalanceRequest(), metadata=auth(alice_token))
    assert (mine.username, mine.balance_micro) == ("alice", 7_500_000)
    # The seed clients send the token in the request body; it still works.
    seed_style = coordinator.tokens.GetBalance(pb.GetBalanceRequest(token=alice_token))
    assert seed_style.balance_micro == 7_500_000
    history = coordinator.tokens.ListTransactions(
        pb.ListTransactionsRequest(page_size=1), metadata=auth(alice_token)
    )
    (row,) = history.transactions
    assert (row.kind, row.amount_micro, row.counterparty, row.memo, row.balance_after_micro) == (
        "transfer",
        -2_500_000,
        "bob",
        "lunch",
        7_500_000,
    )
    assert (
        row.transaction_id == reply.transaction_id
        and abs(row.timestamp - utcnow().timestamp()) < 120
    )
    rest = coordinator.tokens.ListTransactions(
        pb.ListTransactionsRequest(page_token=history.next_page_token), metadata=auth(alice_token)
    )
    assert [(r.kind, r.counterparty) for r in rest.transactions] == [("grant", "system:mint")]
    assert rest.next_page_token == ""


def test_replay_over_grpc_returns_the_original(coordinator: RunningCoordinator) -> None:
    alice, token = coordinator.signup("alice")
    coordinator.signup("bob")
    fund(coordinator, alice, 5 * CPT)
    request = pb.TransferRequest(recipient="bob", amount_micro=CPT, idempotency_key="pay-1")
    first = coordinator.tokens.Transfer(request, metadata=auth(token))
    again = coordinator.tokens.Transfer(request, metadata=auth(token))
    assert again.transaction_id == first.transaction_id and again.new_balance_micro == 4 * CPT
    assert "already made" in again.message
    other = pb.TransferRequest(recipient="bob", amount_micro=2 * CPT, idempotency_key="pay-1")
    with pytest.raises(grpc.RpcError) as err:
        coordinator.tokens.Transfer(other, metadata=auth(token))
    assert code_of(err.value)[0] == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize(
    ("request_fields", "code", "says"),
    [
        (
            {"recipient": "bob", "amount_micro": 0},
            grpc.StatusCode.INVALID_ARGUMENT,
            "greater than zero",
        ),
        (
            {"recipient": "bob", "amount_micro": -CPT},
            grpc.StatusCode.INVALID_ARGUMENT,
            "greater than zero",
        ),
        (
            {"recipient": "bob", "amount_micro": 2**63 - 1},
            grpc.StatusCode.INVALID_ARGUMENT,
            "too large",
        ),
        (
            {"recipient": "nobody", "amount_micro": CPT},
            grpc.StatusCode.NOT_FOUND,
            "no user named 'nobody'",
        ),
        ({"recipient": "", "amount_micro": CPT}, grpc.StatusCode.INVALID_ARGUMENT, "recipient"),
        ({"recipient": "alice", "amount_micro": CPT}, grpc.StatusCode.INVALID_ARGUMENT, "yourself"),
        (
            {"recipient": "bob", "amount_micro": 6 * CPT},
            grpc.StatusCode.FAILED_PRECONDITION,
            "your balance is 5 CPT",
        ),
        (
            {"recipient": "bob", "amount_micro": CPT, "memo": "x" * 201},
            grpc.StatusCode.INVALID_ARGUMENT,
            "memo",
        ),
        (
            {"recipient": "bob", "amount_micro": CPT, "idempotency_key": "k" * 129},
            grpc.StatusCode.INVALID_ARGUMENT,
            "idempotency key",
        ),
    ],
)
def test_refused_transfers_map_to_status_codes(
    sqlite_coordinator: RunningCoordinator,
    request_fields: dict[str, object],
    code: grpc.StatusCode,
    says: str,
) -> None:
    c = sqlite_coordinator
    alice, token = c.signup("alice")
    c.signup("bob")
    fund(c, alice, 5 * CPT)
    with pytest.raises(grpc.RpcError) as err:
        c.tokens.Transfer(pb.TransferRequest(**request_fields), metadata=auth(token))  # type: ignore[arg-type]
    got_code, details = code_of(err.value)
    assert got_code == code and says in details
    assert (
        c.tokens.GetBalance(pb.GetBalanceRequest(), metadata=auth(token)).balance_micro == 5 * CPT
    )


def test_calls_need_a_valid_token_and_only_admins_see_others(
    sqlite_coordinator: RunningCoordinator,
) -> None:
    c = sqlite_coordinator
    _, alice_token = c.signup("alice")
    c.signup("bob")
    admin_token = c.make_admin("root")
    with pytest.raises(grpc.RpcError) as err:
        c.tokens.GetBalance(pb.GetBalanceRequest())
    assert code_of(err.value)[0] == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as err:
        c.tokens.Transfer(
            pb.TransferRequest(recipient="bob", amount_micro=1), metadata=auth("forged")
        )
    assert code_of(err.value)[0] == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as err:
        c.tokens.GetBalance(pb.GetBalanceRequest(username="bob"), metadata=auth(alice_token))
    assert code_of(err.value)[0] == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as err:
        c.tokens.ListTransactions(
            pb.ListTransactionsRequest(username="bob"), metadata=auth(alice_token)
        )
    assert code_of(err.value)[0] == grpc.StatusCode.PERMISSION_DENIED
    seen = c.tokens.GetBalance(pb.GetBalanceRequest(username="bob"), metadata=auth(admin_token))
    assert (seen.username, seen.balance_micro) == ("bob", 0)
    with pytest.raises(grpc.RpcError) as err:
        c.tokens.ListTransactions(
            pb.ListTransactionsRequest(page_token="garbage"), metadata=auth(alice_token)
        )
    assert code_of(err.value)[0] == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        c.tokens.ListTransactions(
            pb.ListTransactionsRequest(page_size=201), metadata=auth(alice_token)
        )
    assert code_of(err.value)[0] == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_200_concurrent_transfers_over_grpc(db_url: str, tmp_path: Path, event_loop: str) -> None:
    """On both databases and on both event loops the coordinator can serve on (the rest of the suite runs
    on the default, uvloop)."""
    with RunningCoordinator.start(
        db_url=db_url, data_dir=tmp_path, event_loop=event_loop
    ) as coordinator:
        assert type(coordinator.background.loop).__module__.split(".")[0] == event_loop
        _race_200_transfers(coordinator)


def _race_200_transfers(coordinator: RunningCoordinator) -> None:
    alice, token = coordinator.signup("alice")
    coordinator.signup("bob")
    fund(coordinator, alice, 100 * CPT)
    request = pb.TransferRequest(recipient="bob", amount_micro=CPT)
    calls = [coordinator.tokens.Transfer.future(request, metadata=auth(token)) for _ in range(200)]
    ok = refused = 0
    for call in calls:
        try:
            call.result(timeout=120)
            ok += 1
        except grpc.RpcError as exc:
            got_code, details = code_of(exc)
            assert got_code == grpc.StatusCode.FAILED_PRECONDITION, details
            assert "insufficient funds" in details.lower()
            refused += 1
    assert (ok, refused) == (100, 100)
    bob_balance = coordinator.tokens.GetBalance(
        pb.GetBalanceRequest(), metadata=auth(coordinator.login("bob").token)
    )
    assert bob_balance.balance_micro == 100 * CPT
    with coordinator.coordinator.db.read() as session:
        assert ledger.audit(session) == []


# -- REST -----------------------------------------------------------------------------------------------------
def test_wallet_rest_routes(coordinator: RunningCoordinator) -> None:
    c = coordinator
    alice, token = c.signup("alice")
    c.signup("bob")
    fund(c, alice, 3 * CPT)
    r = c.http.post(
        "/api/v1/wallet/transfer",
        json={"recipient": "bob", "amount_micro": CPT, "idempotency_key": "r-1"},
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["new_balance_micro"] == 2 * CPT and not body["replayed"]
    again = c.http.post(
        "/api/v1/wallet/transfer",
        json={"recipient": "bob", "amount_micro": CPT, "idempotency_key": "r-1"},
        headers=bearer(token),
    ).json()
    assert again["replayed"] and again["transaction_id"] == body["transaction_id"]
    assert c.http.get("/api/v1/wallet/balance", headers=bearer(token)).json() == {
        "username": "alice",
        "balance_micro": 2 * CPT,
    }
    page = c.http.get(
        "/api/v1/wallet/transactions", params={"page_size": 1}, headers=bearer(token)
    ).json()
    assert page["transactions"][0]["amount_micro"] == -CPT and page["next_page_token"]
    poor = c.http.post(
        "/api/v1/wallet/transfer",
        json={"recipient": "bob", "amount_micro": 9 * CPT},
        headers=bearer(token),
    )
    assert poor.status_code == 409 and poor.json()["error"]["code"] == "FAILED_PRECONDITION"
    assert "insufficient" in poor.json()["error"]["message"].lower()
    for amount in ["5", 5.0, None]:
        loose = c.http.post(
            "/api/v1/wallet/transfer",
            json={"recipient": "bob", "amount_micro": amount},
            headers=bearer(token),
        )
        assert loose.status_code == 422, amount
    assert c.http.get("/api/v1/wallet/balance").status_code == 401
    assert (
        c.http.get(
            "/api/v1/wallet/balance", params={"username": "bob"}, headers=bearer(token)
        ).status_code
        == 403
    )


def test_admin_grant_and_audit(sqlite_coordinator: RunningCoordinator) -> None:
    c = sqlite_coordinator
    _, token = c.signup("alice")
    admin = c.make_admin("root")
    grant = {
        "username": "alice",
        "amount_micro": 50 * CPT,
        "idempotency_key": "g-1",
        "memo": "welcome",
    }
    assert (
        c.http.post("/api/v1/admin/ledger/grant", json=grant, headers=bearer(token)).status_code
        == 403
    )
    r = c.http.post("/api/v1/admin/ledger/grant", json=grant, headers=bearer(admin))
    assert r.status_code == 200 and r.json()["new_balance_micro"] == 50 * CPT
    again = c.http.post("/api/v1/admin/ledger/grant", json=grant, headers=bearer(admin)).json()
    assert again["replayed"] and again["transaction_id"] == r.json()["transaction_id"]
    missing = c.http.post(
        "/api/v1/admin/ledger/grant", json=grant | {"username": "nobody"}, headers=bearer(admin)
    )
    assert missing.status_code == 404
    assert c.http.get("/api/v1/admin/ledger/audit", headers=bearer(token)).status_code == 403
    assert c.http.get("/api/v1/admin/ledger/audit", headers=bearer(admin)).json() == {
        "status": "ok"
    }
    with c.coordinator.db.write() as session:
        session.connection().exec_driver_sql(
            "UPDATE ledger_accounts SET balance_micro = balance_micro + 1"
        )
    report = c.http.get("/api/v1/admin/ledger/audit", headers=bearer(admin)).json()
    assert report["status"] == "discrepancies" and report["discrepancies"]
