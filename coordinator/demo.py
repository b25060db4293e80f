"""``hivemind demo``: start a coordinator on a throwaway SQLite database and walk through the core as real
clients would (gRPC and REST): accounts, an admin grant, transfers, a safe retry, a refused overdraft, the
history, and the ledger audit. Stops everything it started and exits 0 when every step behaved."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import grpc
import httpx

from coordinator.ledger.models import MICRO_PER_CPT
from coordinator.server import BackgroundCoordinator
from coordinator.settings import Settings
from shared_proto.v1 import tokens_pb2, tokens_pb2_grpc, users_pb2, users_pb2_grpc

PASSWORD = "demo-password-123"
Metadata = tuple[tuple[str, str | bytes], ...]


def cpt(micro: int) -> str:
    return f"{micro / MICRO_PER_CPT:,.6f} CPT"


def _step(text: str) -> None:
    print(f"\n▶ {text}")


def run_demo(data_dir: Path) -> int:
    settings = Settings(
        data_dir=data_dir, grpc_port=0, http_port=0, log_level="WARNING", log_format="text"
    )
    with BackgroundCoordinator(settings) as coordinator:
        print(
            f"Coordinator up: gRPC 127.0.0.1:{coordinator.grpc_port}, HTTP http://127.0.0.1:{coordinator.http_port}"
        )
        print(f"Database: {coordinator.db.safe_url}")
        channel = grpc.insecure_channel(f"127.0.0.1:{coordinator.grpc_port}")
        users = users_pb2_grpc.UserServiceStub(channel)
        tokens = tokens_pb2_grpc.TokenServiceStub(channel)
        http = httpx.Client(base_url=f"http://127.0.0.1:{coordinator.http_port}", timeout=30)
        try:
            _step(
                "Create an admin (as `hivemind coordinator create-admin` does) and two users over gRPC"
            )
            coordinator.accounts.create_admin("admin", "admin@hivemind.example", PASSWORD)
            for name in ("alice", "bob"):
                reply = users.Register(
                    users_pb2.RegisterRequest(
                        username=name, email=f"{name}@example.org", password=PASSWORD
                    )
                )
                print(f"  {reply.message}")

            def login(name: str) -> Metadata:
                token = users.Login(users_pb2.LoginRequest(username=name, password=PASSWORD)).token
                return (("authorization", f"Bearer {token}"),)

            admin, alice, bob = login("admin"), login("alice"), login("bob")
            admin_http = {"Authorization": str(admin[0][1])}

            _step("The admin grants alice 100 CPT over REST (POST /api/v1/admin/ledger/grant)")
            r = http.post(
                "/api/v1/admin/ledger/grant",
                json={
                    "username": "alice",
                    "amount_micro": 100 * MICRO_PER_CPT,
                    "memo": "demo grant",
                },
                headers=admin_http,
            )
            r.raise_for_status()
            print(f"  granted; alice now has {cpt(_balance(tokens, alice))}")

            _step("alice sends bob 12.5 CPT over gRPC, with an idempotency key")
            key = f"demo-{uuid.uuid4().hex[:8]}"
            request = tokens_pb2.TransferRequest(
                recipient="bob", amount_micro=12_500_000, idempotency_key=key
            )
            first = tokens.Transfer(request, metadata=alice)
            print(
                f"  transaction {first.transaction_id}: alice's balance is {cpt(first.new_balance_micro)}"
            )

            _step("The network drops the reply and alice's app retries with the same key")
            again = tokens.Transfer(request, metadata=alice)
            same = again.transaction_id == first.transaction_id
            print(
                f"  same transaction {again.transaction_id}: {'moved once' if same else 'MOVED TWICE'}"
            )

            _step("bob tries to send 50 CPT he does not have")
            try:
                tokens.Transfer(
                    tokens_pb2.TransferRequest(recipient="alice", amount_micro=50 * MICRO_PER_CPT),
                    metadata=bob,
                )
                refused = False
            except grpc.RpcError as exc:
                refused = exc.code() == grpc.StatusCode.FAILED_PRECONDITION
                print(f"  refused ({exc.code().name}): {exc.details()}")

            _step("Balances and bob's history")
            balances = {name: _balance(tokens, md) for name, md in (("alice", alice), ("bob", bob))}
            for name, micro in balances.items():
                print(f"  {name:6s} {cpt(micro):>20s}")
            history = tokens.ListTransactions(
                tokens_pb2.ListTransactionsRequest(page_size=10), metadata=bob
            )
            for row in history.transactions:
                print(
                    f"  bob  {row.kind:10s} {cpt(row.amount_micro):>20s}  from/to {row.counterparty}"
                )

            _step("The ledger audit (GET /api/v1/admin/ledger/audit)")
            audit = http.get("/api/v1/admin/ledger/audit", headers=admin_http).json()
            print(f"  {audit}")
        finally:
            channel.close()
            http.close()
    ok = (
        same
        and refused
        and balances == {"alice": 87_500_000, "bob": 12_500_000}
        and audit.get("status") == "ok"
    )
    print(
        "\nDemo finished: everything behaved."
        if ok
        else "\nDemo finished with a problem: see above."
    )
    return 0 if ok else 1


def _balance(tokens: tokens_pb2_grpc.TokenServiceStub, metadata: Metadata) -> int:
    return int(tokens.GetBalance(tokens_pb2.GetBalanceRequest(), metadata=metadata).balance_micro)


def main(keep: Path | None = None) -> int:
    if keep is not None:
        return run_demo(keep)
    with tempfile.TemporaryDirectory(prefix="hivemind-demo-") as tmp:
        return run_demo(Path(tmp))
