"""An administrator's grant (mint) of CPT, with its audit entry in the ledger transaction's own commit."""

from __future__ import annotations

from coordinator.accounts.tokens import Principal
from coordinator.admin import audit
from coordinator.clock import Clock
from coordinator.db import Database
from coordinator.ledger import service as ledger


def grant(
    db: Database,
    clock: Clock,
    actor: Principal,
    username: str,
    amount_micro: int,
    *,
    idempotency_key: str | None = None,
    memo: str = "",
) -> ledger.GrantResult:
    """Mint into ``username``'s wallet. A replay of an idempotency key moves nothing and logs nothing."""
    now = clock()
    with db.write() as session:
        audit.require_admin(session, actor)
        result = ledger.grant(
            session,
            ledger.user_id_by_username(session, username),
            amount_micro,
            idempotency_key=idempotency_key,
            memo=memo,
            now=now,
            initiator_user_id=actor.user_id,
        )
        if not result.replayed:
            audit.record(
                session,
                actor,
                "ledger.grant",
                f"user:{username}",
                now=now,
                summary=f"Granted {ledger.format_cpt(result.amount_micro)} to {username}.",
                detail={
                    "amount_micro": result.amount_micro,
                    "transaction_id": result.transaction_id,
                    "memo": memo,
                },
            )
    return result
