"""The price table and platform fee in force, persisted: the settings give the first table, and an
administrator's change is stored (with who and when) and applies to jobs submitted after it. Each job keeps
the table it was submitted under (``Job.prices``) and is charged by it to the end.

The table in force is held in memory and read by every submission without a query; it is loaded at start.
Several coordinator processes on one database each load it at start, so restart the others after a change.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields
from datetime import datetime

from sqlmodel import col, select

from coordinator.accounts.tokens import Principal
from coordinator.admin import audit
from coordinator.admin.models import PriceChange
from coordinator.clock import Clock
from coordinator.db import Database
from coordinator.errors import FailedPrecondition, InvalidArgument
from coordinator.rewards.pricing import PriceTable

PRICE_FIELDS = tuple(f.name for f in fields(PriceTable))
MAX_PRICE_MICRO = 10**12
MAX_FEE_BPS = 10_000


@dataclass(frozen=True, slots=True)
class PriceView:
    prices: PriceTable
    source: str  # "settings" or "admin"
    updated_at: datetime | None
    updated_by: str | None


class Pricing:
    def __init__(self, db: Database, clock: Clock, defaults: PriceTable) -> None:
        self.db = db
        self.clock = clock
        self._lock = threading.Lock()
        self._view = PriceView(defaults, "settings", None, None)

    def current(self) -> PriceTable:
        """The table a submission made now is priced by (no I/O)."""
        return self._view.prices

    def view(self) -> PriceView:
        return self._view

    def load(self) -> None:
        """Take the newest stored change, if an administrator ever made one (at start)."""
        with self.db.read() as session:
            row = session.exec(select(PriceChange).order_by(col(PriceChange.id).desc())).first()
        if row is not None:
            self._view = _view_of(row)

    def update(self, actor: Principal, changes: dict[str, int]) -> PriceView:
        """Change some or all of the five numbers; the others keep their value."""
        unknown = sorted(set(changes) - set(PRICE_FIELDS))
        if unknown:
            raise InvalidArgument(
                f"Unknown price field(s): {', '.join(unknown)}. Use: {', '.join(PRICE_FIELDS)}."
            )
        if not changes:
            raise InvalidArgument(f"Give at least one of: {', '.join(PRICE_FIELDS)}.")
        for name, value in changes.items():
            upper = MAX_FEE_BPS if name == "platform_fee_bps" else MAX_PRICE_MICRO
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= upper:
                unit = "basis points (10000 = 100 %)" if name == "platform_fee_bps" else "micro-CPT"
                raise InvalidArgument(
                    f"{name} must be a whole number from 0 to {upper:,} {unit}; got {value!r}."
                )
        now = self.clock()
        with self._lock:  # one change at a time in this process: the "before" of the audit is exact
            before = self._view.prices
            after = PriceTable(**(before.as_dict() | changes))
            changed = {
                k: {"from": v, "to": after.as_dict()[k]}
                for k, v in before.as_dict().items()
                if after.as_dict()[k] != v
            }
            if not changed:
                raise FailedPrecondition(
                    "These are the current prices already; nothing was changed. Send the values "
                    "that should differ."
                )
            with self.db.write() as session:
                audit.require_admin(session, actor)
                row = PriceChange(
                    **after.as_dict(),
                    changed_by_id=actor.user_id,
                    changed_by=actor.username,
                    created_at=now,
                )
                session.add(row)
                audit.record(
                    session,
                    actor,
                    "pricing.update",
                    "pricing",
                    now=now,
                    summary="Changed the price table: "
                    + ", ".join(f"{k} {c['from']} → {c['to']}" for k, c in changed.items())
                    + ". It applies to jobs submitted from now on.",
                    detail={"changed": changed, "prices": after.as_dict()},
                )
                session.flush()
                view = _view_of(row)
            self._view = view
        return view


def _view_of(row: PriceChange) -> PriceView:
    prices = PriceTable(**{name: int(getattr(row, name)) for name in PRICE_FIELDS})
    return PriceView(prices, "admin", row.created_at, row.changed_by)
