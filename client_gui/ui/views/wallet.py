"""The Wallet view: balance, the statement (paged) and a transfer to another user. Layout only;
:mod:`client_gui.ui.controllers.wallet` does the work."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from client_gui.ui.views.common import card, figure, sentence
from client_gui.ui.views.earnings import page_layout, read_only_table

HISTORY_COLUMNS = ("When", "What", "With", "Memo", "Amount", "Balance after")


def error_label(accessible: str) -> QLabel:
    """A sentence under a field saying what to fix; hidden while empty."""
    label = sentence("", error=True)
    label.setAccessibleName(accessible)
    label.setVisible(False)
    return label


def set_error(label: QLabel, text: str) -> None:
    label.setText(text)
    label.setVisible(bool(text))


class WalletView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("walletView")
        layout = page_layout(self, "Wallet")

        top = QHBoxLayout()
        top.setSpacing(14)
        balance_box, balance = card("Balance")
        figure_widget, self.balance = figure("in your wallet")
        self.balance.setAccessibleName("Balance")
        self.balance.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        balance.addWidget(figure_widget)
        balance.addStretch(1)
        top.addWidget(balance_box, 1)

        transfer_box, transfer = card("Send CPT to another user")
        self.recipient = QLineEdit()
        self.recipient.setPlaceholderText("their username")
        self.recipient.setAccessibleName("Recipient")
        self.recipient_error = error_label("Recipient problem")
        self.amount = QLineEdit()
        self.amount.setPlaceholderText("e.g. 2.5")
        self.amount.setAccessibleName("Amount in CPT")
        self.amount_error = error_label("Amount problem")
        self.memo = QLineEdit()
        self.memo.setPlaceholderText("optional, shown in both statements")
        self.memo.setMaxLength(200)
        self.memo.setAccessibleName("Memo")
        self.send = QPushButton("Send…")
        self.result = sentence("")
        self.result.setAccessibleName("Transfer result")
        form = QFormLayout()
        form.addRow("To", self.recipient)
        form.addRow("", self.recipient_error)
        form.addRow("Amount (CPT)", self.amount)
        form.addRow("", self.amount_error)
        form.addRow("Memo", self.memo)
        transfer.addLayout(form)
        send_row = QHBoxLayout()
        send_row.addWidget(self.result, 1)
        send_row.addWidget(self.send)
        transfer.addLayout(send_row)
        top.addWidget(transfer_box, 2)
        layout.addLayout(top)

        history_box, history = card("History")
        self.history = read_only_table(HISTORY_COLUMNS, stretch=3)
        self.history.setAccessibleName("Wallet history")
        history.addWidget(self.history, 1)
        more = QHBoxLayout()
        self.history_status = sentence("")
        self.load_more = QPushButton("Load more")
        self.load_more.setEnabled(False)
        more.addWidget(self.history_status, 1)
        more.addWidget(self.load_more)
        history.addLayout(more)
        layout.addWidget(history_box, 1)
