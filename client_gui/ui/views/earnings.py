"""The Earnings view: balance, today, the last 7 days, CPT/day at the current rate, a chart of the daily
earnings and a table of the task payments. Layout only; :mod:`client_gui.ui.controllers.earnings` fills it.
Also the table helpers the Wallet and Submit views share."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from client_gui.ui.views.chart import BarChart
from client_gui.ui.views.common import card, figure, page_title, sentence

PAYMENT_COLUMNS = ("When", "Task", "Amount")


def page_layout(view: QWidget, title: str) -> QVBoxLayout:
    """The margins, spacing and title every page of the main window has."""
    layout = QVBoxLayout(view)
    layout.setContentsMargins(24, 20, 24, 20)
    layout.setSpacing(14)
    layout.addWidget(page_title(title))
    return layout


def read_only_table(columns: tuple[str, ...], *, stretch: int) -> QTableWidget:
    """A table of text rows, selected a row at a time; column ``stretch`` takes the spare width."""
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(list(columns))
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setAlternatingRowColors(True)
    table.setWordWrap(False)
    table.verticalHeader().setVisible(False)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)
    return table


def fill_table(
    table: QTableWidget, rows: list[tuple[str, ...]], *, right_align: frozenset[int], append: bool
) -> None:
    """Put ``rows`` of text in ``table`` (replacing or after the rows there); amounts right-aligned."""
    start = table.rowCount() if append else 0
    table.setRowCount(start + len(rows))
    for r, row in enumerate(rows, start=start):
        for c, text in enumerate(row):
            item = QTableWidgetItem(text)
            if c in right_align:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            table.setItem(r, c, item)


class EarningsView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("earningsView")
        layout = page_layout(self, "Earnings")

        summary_box, summary = card("Your earnings")
        row = QHBoxLayout()
        balance, self.balance = figure("balance")
        today, self.today = figure("today")
        week, self.week = figure("last 7 days")
        rate, self.rate = figure("estimated at the current rate")
        for widget, value, name in (
            (balance, self.balance, "Balance"),
            (today, self.today, "Earned today"),
            (week, self.week, "Earned in the last 7 days"),
            (rate, self.rate, "Estimated earnings per day"),
        ):
            value.setAccessibleName(name)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            row.addWidget(widget, 1)
        summary.addLayout(row)
        layout.addWidget(summary_box)

        chart_box, chart = card("Earnings per day")
        self.chart = BarChart()
        self.chart.setAccessibleName("Earnings per day, last 7 days")
        chart.addWidget(self.chart)
        layout.addWidget(chart_box, 2)

        payments_box, payments = card("Payments for tasks (last 7 days)")
        self.payments = read_only_table(PAYMENT_COLUMNS, stretch=1)
        self.payments.setAccessibleName("Payments for tasks")
        payments.addWidget(self.payments)
        layout.addWidget(payments_box, 3)

        self.status = sentence("")
        self.status.setAccessibleName("Status")
        layout.addWidget(self.status)

    def show_payments(self, rows: list[tuple[str, str, str]]) -> None:
        fill_table(self.payments, list(rows), right_align=frozenset({2}), append=False)
