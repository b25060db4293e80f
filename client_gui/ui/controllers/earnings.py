"""Behaviour of the Earnings view: shows the shared :class:`~client_gui.ui.earnings_model.EarningsModel`
whenever it changes, and asks it for fresh figures when the view is opened."""

from __future__ import annotations

import datetime as dt

from PySide6.QtCore import QObject

from client_gui.engine.jobs_client import format_cpt
from client_gui.ui.context import AppContext
from client_gui.ui.earnings_model import EarningsModel
from client_gui.ui.views.chart import Bar
from client_gui.ui.views.earnings import EarningsView

PAYMENTS_SHOWN = 500
"""Rows in the payments table; more would make each refresh slow on the GUI thread."""


def when(at: dt.datetime) -> str:
    """A ledger time as this computer's local time, e.g. "Mon 23 Nov 14:05"."""
    return at.astimezone().strftime("%a %d %b %H:%M")


def daily_bars(daily: list[tuple[dt.date, int]], today: dt.date) -> list[Bar]:
    return [
        Bar(
            label="Today" if day == today else day.strftime("%a"),
            value=amount,
            description=f"{'Today' if day == today else day.strftime('%A %d %B')}: "
            f"{format_cpt(amount)}",
            highlight=day == today,
            value_text=format_cpt(amount).removesuffix(" CPT") if amount else "",
        )
        for day, amount in daily
    ]


class EarningsController(QObject):
    def __init__(self, view: EarningsView, context: AppContext) -> None:
        super().__init__(view)
        self.view = view
        self.model: EarningsModel = context.earnings
        if context.engine is not None:
            self.model.follow(context.engine)
        self.model.changed.connect(self.show)
        self.model.failed.connect(self._failed)
        self.show()
        self.model.refresh()

    def show(self) -> None:
        model, view = self.model, self.view
        if not model.loaded:
            view.status.setText("Reading your earnings from the coordinator…")
            return
        view.balance.setText(format_cpt(model.balance_micro))
        view.today.setText(format_cpt(model.today_micro))
        view.week.setText(format_cpt(model.week_micro))
        view.rate.setText(f"{format_cpt(model.rate_per_day_micro())} a day")
        today = model.daily[-1][0] if model.daily else dt.date.today()
        view.chart.set_bars(
            daily_bars(model.daily, today),
            empty_text="No earnings in the last 7 days yet. They appear here once this computer "
            "has finished a task.",
        )
        payments = model.payments
        view.show_payments(
            [(when(r.at), r.memo, format_cpt(r.amount_micro)) for r in payments[:PAYMENTS_SHOWN]]
        )
        view.status.setText(
            f"The latest {PAYMENTS_SHOWN} of {len(payments)} payments are listed."
            if len(payments) > PAYMENTS_SHOWN
            else ""
        )

    def _failed(self, sentence: str) -> None:
        self.view.status.setText(sentence)
