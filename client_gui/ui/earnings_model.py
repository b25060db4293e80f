"""The signed-in person's earnings, read from the coordinator's ledger: balance, today, the last 7 days, the
task payments and an estimate of CPT per day. Shared by the Earnings view and the tray.

All amounts are exact integers of micro-CPT, taken as the ledger states them; nothing is ever summed
through a float. Every network call runs in :class:`~client_gui.ui.background.Background`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Signal

from client_gui.engine.account_client import TASK_PAYMENT, LedgerRow
from client_gui.engine.coordinator_client import CoordinatorError
from client_gui.ui.background import Background
from client_gui.ui.session import AppSession

if TYPE_CHECKING:
    from client_gui.ui.engine_controller import EngineController

logger = logging.getLogger(__name__)

DAYS = 7
REFRESH_MS = 15_000
DAY_S = 24 * 3600
MIN_SPAN_S = 3600
"""The shortest span a rate is extrapolated from, so one payment a minute ago is not taken for 1,440 a day."""
OVERLAP = dt.timedelta(minutes=5)
"""How far back an incremental refresh looks past the newest row it has, for rows committed late."""


def local_now() -> dt.datetime:
    """Now, as an aware datetime in this computer's time zone."""
    return dt.datetime.now().astimezone()


@dataclass(frozen=True)
class Figures:
    """What the model shows, computed from the ledger rows (see :func:`summarize`)."""

    balance_micro: int
    today_micro: int
    week_micro: int
    daily: list[tuple[dt.date, int]]
    payments: list[LedgerRow]
    rate_per_day_micro: int


def window_start(now: dt.datetime) -> dt.datetime:
    """Local midnight ``DAYS - 1`` days before today: the oldest moment the figures cover."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - dt.timedelta(days=DAYS - 1)


def summarize(rows: list[LedgerRow], balance_micro: int, now: dt.datetime) -> Figures:
    """The figures for ``rows`` (any order) at ``now`` (an aware local datetime).

    Earnings are the ``task_payment`` rows: what the coordinator paid this person's computers for verified
    tasks. Transfers and grants move the balance but are not earnings.

    Days are local calendar days in ``now``'s time zone; "today" starts at local midnight.

    The rate per day is the earnings of the last 24 hours. When the first payment in the window is less
    than 24 hours old (the computer has not been earning for a whole day yet), those earnings are
    extrapolated to a day from the time since that first payment, counted as at least one hour.
    """
    tz = now.tzinfo
    start = window_start(now)
    today = now.date()
    payments = sorted(
        (r for r in rows if r.kind == TASK_PAYMENT and r.at >= start),
        key=lambda r: (r.at, r.transaction_id),
        reverse=True,
    )
    by_day = {today - dt.timedelta(days=n): 0 for n in range(DAYS)}
    for row in payments:
        day = row.at.astimezone(tz).date()
        if day in by_day:
            by_day[day] += row.amount_micro
    daily = sorted(by_day.items())

    day_ago = now - dt.timedelta(seconds=DAY_S)
    recent = [r for r in payments if r.at > day_ago]
    rate = 0
    if recent:
        earned = sum(r.amount_micro for r in recent)
        if payments[-1].at <= day_ago:
            rate = earned
        else:
            span_s = max(int((now - payments[-1].at).total_seconds()), MIN_SPAN_S)
            rate = earned * DAY_S // span_s
    return Figures(
        balance_micro=balance_micro,
        today_micro=by_day[today],
        week_micro=sum(by_day.values()),
        daily=daily,
        payments=payments,
        rate_per_day_micro=rate,
    )


class EarningsModel(QObject):
    """Balance and earnings of the signed-in person, refreshed every ``REFRESH_MS`` and whenever a
    followed engine finishes a task. ``changed`` is emitted when new figures arrive; ``failed`` with a
    sentence when a refresh could not reach the ledger (the last figures stay)."""

    changed = Signal()
    failed = Signal(str)

    def __init__(
        self,
        session: AppSession,
        background: Background,
        *,
        clock: Callable[[], dt.datetime] = local_now,
        parent: QObject | None = None,
        refresh_ms: int = REFRESH_MS,
    ) -> None:
        super().__init__(parent)
        self._session = session
        self._background = background
        self._clock = clock
        # rows of the window, by (transaction id, amount): an incremental refresh fetches only new ones
        self._rows: dict[tuple[str, int], LedgerRow] = {}
        self._figures = summarize([], 0, clock())
        self._in_flight = False
        self._again = False
        self._followed: set[int] = set()
        self.loaded = False
        """Whether figures have arrived from the coordinator at least once."""
        self.error = ""
        """The sentence of the last failed refresh; empty after a good one."""
        self._timer = QTimer(self)
        self._timer.setInterval(refresh_ms)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()

    # -- the figures ---------------------------------------------------------------------------------

    @property
    def balance_micro(self) -> int:
        return self._figures.balance_micro

    @property
    def today_micro(self) -> int:
        return self._figures.today_micro

    @property
    def week_micro(self) -> int:
        return self._figures.week_micro

    @property
    def daily(self) -> list[tuple[dt.date, int]]:
        """The last 7 days including today, oldest first, zeros included."""
        return list(self._figures.daily)

    @property
    def payments(self) -> list[LedgerRow]:
        """Task payments of the last 7 days, newest first."""
        return list(self._figures.payments)

    def rate_per_day_micro(self) -> int:
        """Estimated earnings per day at the current rate (the rule is in :func:`summarize`)."""
        return self._figures.rate_per_day_micro

    # -- refreshing ----------------------------------------------------------------------------------

    def follow(self, engine: EngineController) -> None:
        """Refresh whenever ``engine`` finishes a task, so a payment made at once shows at once (one
        that waits for another computer's replica comes with a later refresh). Following the same
        engine twice is harmless."""
        if id(engine) in self._followed:
            return
        self._followed.add(id(engine))
        engine.task_finished.connect(self._on_task_finished)

    def stop(self) -> None:
        """No more timed refreshes (sign-out, shutdown)."""
        self._timer.stop()

    def reset(self) -> None:
        """Forget the figures (another person signed in)."""
        self._rows.clear()
        self._figures = summarize([], 0, self._clock())
        self.loaded = False
        self.changed.emit()

    def refresh(self) -> None:
        """Fetch the balance and the ledger rows not seen yet, in the background; emits ``changed``."""
        if self._in_flight:
            self._again = True
            return
        self._in_flight = True
        now = self._clock()
        start = window_start(now)
        newest = max((r.at for r in self._rows.values()), default=None)
        since = start if newest is None else max(start, newest - OVERLAP)
        session = self._session

        def fetch() -> tuple[int, list[LedgerRow]]:
            balance = session.call(session.account.balance)
            rows = session.call(lambda: session.account.history_since(since))
            return balance, rows

        self._background.run(fetch, self._arrived, self._refused)

    def _on_task_finished(self, _event: object) -> None:
        self.refresh()

    def _arrived(self, outcome: tuple[int, list[LedgerRow]]) -> None:
        balance, rows = outcome
        now = self._clock()
        start = window_start(now)
        for row in rows:
            self._rows[(row.transaction_id, row.amount_micro)] = row
        self._rows = {k: r for k, r in self._rows.items() if r.at >= start}
        self._figures = summarize(list(self._rows.values()), balance, now)
        self.loaded = True
        self.error = ""
        self._done()
        self.changed.emit()

    def _refused(self, exc: Exception) -> None:
        self.error = (
            exc.message
            if isinstance(exc, CoordinatorError)
            else "The earnings could not be read. They will be tried again shortly."
        )
        logger.info("earnings refresh failed: %r", exc)
        self._done()
        self.failed.emit(self.error)

    def _done(self) -> None:
        self._in_flight = False
        if self._again:
            self._again = False
            QTimer.singleShot(0, self.refresh)
