"""Behaviour of the Wallet view: the balance and statement (a page at a time), and a transfer that is
confirmed first, sent once (one idempotency key per confirmed transfer) and refused with the coordinator's
sentence. Every coordinator call runs in the background."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QMessageBox, QWidget

from client_gui.engine.account_client import LedgerRow, TransferReceipt
from client_gui.engine.coordinator_client import CoordinatorError
from client_gui.engine.jobs_client import JobSpecError, cpt_to_micro, format_cpt
from client_gui.ui.context import AppContext
from client_gui.ui.controllers.earnings import when
from client_gui.ui.retry import RetryKey
from client_gui.ui.views.earnings import fill_table
from client_gui.ui.views.wallet import WalletView, set_error

PAGE_SIZE = 50
KIND_NAMES = {
    "task_payment": "Task payment",
    "transfer": "Transfer",
    "escrow_hold": "Job budget held",
    "escrow_refund": "Job budget returned",
    "grant": "Grant",
}

Confirm = Callable[[str, int, str], bool]
"""Asks the person to confirm sending ``amount_micro`` to ``recipient`` (with ``memo``)."""


def sentence(exc: Exception, fallback: str) -> str:
    """The sentence to show for a failed call: the coordinator's own, or ``fallback``."""
    return exc.message if isinstance(exc, CoordinatorError) else fallback


def confirm_with_dialog(parent: QWidget) -> Confirm:
    def ask(recipient: str, amount_micro: int, memo: str) -> bool:
        box = QMessageBox(parent)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Send CPT")
        box.setText(f"Send {format_cpt(amount_micro)} to {recipient}?")
        box.setInformativeText(
            (f'Memo: "{memo}"\n' if memo else "") + "A transfer cannot be undone."
        )
        box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        return box.exec() == QMessageBox.StandardButton.Yes

    return ask


def counterparty_name(account: str) -> str:
    """Who was on the other side, in words: a username, a job's budget, or HiveMind itself."""
    kind, _, rest = account.partition(":")
    if kind == "escrow" and rest:
        return f"job {rest[:8]}"
    if kind == "system":
        return "HiveMind fees" if rest == "fees" else "HiveMind"
    return account


def history_row(row: LedgerRow) -> tuple[str, str, str, str, str, str]:
    sign = "+" if row.amount_micro > 0 else "−" if row.amount_micro < 0 else ""
    return (
        when(row.at),
        KIND_NAMES.get(row.kind, row.kind.replace("_", " ").capitalize()),
        counterparty_name(row.counterparty),
        row.memo,
        f"{sign}{format_cpt(abs(row.amount_micro))}",
        format_cpt(row.balance_after_micro),
    )


class WalletController(QObject):
    def __init__(
        self, view: WalletView, context: AppContext, *, confirm: Confirm | None = None
    ) -> None:
        super().__init__(view)
        self.view = view
        self.context = context
        self.confirm: Confirm = confirm or confirm_with_dialog(view)
        self._next_page = ""
        self._sending = False
        self._retry = RetryKey()
        view.send.clicked.connect(self.send)
        view.load_more.clicked.connect(self.load_more)
        view.amount.returnPressed.connect(self.send)
        view.installEventFilter(self)
        self.refresh()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        # Payments and job budgets move the balance meanwhile: read it again whenever the page shows.
        if watched is self.view and event.type() == QEvent.Type.Show:
            self.refresh()
        return False

    # -- balance and history -------------------------------------------------------------------------

    def refresh(self) -> None:
        """The balance and the first page of the statement."""
        session = self.context.session

        def fetch() -> tuple[int, list[LedgerRow], str]:
            balance = session.call(session.account.balance)
            rows, token = session.call(lambda: session.account.transactions(page_size=PAGE_SIZE))
            return balance, rows, token

        self.view.history_status.setText("Reading your wallet…")
        self.context.background.run(fetch, self._first_page, self._history_failed)

    def load_more(self) -> None:
        if not self._next_page:
            return
        session, token = self.context.session, self._next_page
        self.view.load_more.setEnabled(False)
        self.context.background.run(
            lambda: session.call(
                lambda: session.account.transactions(page_size=PAGE_SIZE, page_token=token)
            ),
            self._next_rows,
            self._history_failed,
        )

    def _first_page(self, outcome: tuple[int, list[LedgerRow], str]) -> None:
        balance, rows, token = outcome
        self.view.balance.setText(format_cpt(balance))
        self._show_rows(rows, token, append=False)

    def _next_rows(self, outcome: tuple[list[LedgerRow], str]) -> None:
        rows, token = outcome
        self._show_rows(rows, token, append=True)

    def _show_rows(self, rows: list[LedgerRow], token: str, *, append: bool) -> None:
        fill_table(
            self.view.history,
            [history_row(r) for r in rows],
            right_align=frozenset({4, 5}),
            append=append,
        )
        self._next_page = token
        self.view.load_more.setEnabled(bool(token))
        shown = self.view.history.rowCount()
        if shown == 0:
            status = "No movements yet."
        elif token:
            status = f"The latest {shown} movements; press Load more for older ones."
        else:
            status = f"All {shown} movements."
        self.view.history_status.setText(status)

    def _history_failed(self, exc: Exception) -> None:
        self.view.load_more.setEnabled(bool(self._next_page))
        self.view.history_status.setText(
            sentence(exc, "The wallet could not be read. Try again in a moment.")
        )

    # -- transfer ------------------------------------------------------------------------------------

    def send(self) -> None:
        """Check the form, ask for confirmation, then send in the background."""
        if self._sending:
            return
        view = self.view
        recipient = view.recipient.text().strip()
        memo = view.memo.text().strip()
        set_error(view.recipient_error, "")
        set_error(view.amount_error, "")
        view.result.setText("")
        amount = 0
        if not recipient:
            set_error(view.recipient_error, "Enter the username of the person to pay.")
        elif recipient == self.context.session.username:
            set_error(view.recipient_error, "That is you; enter someone else's username.")
        try:
            amount = cpt_to_micro(view.amount.text()) if view.amount.text().strip() else 0
        except JobSpecError as exc:
            set_error(view.amount_error, str(exc))
        else:
            if not amount:
                set_error(view.amount_error, "Enter the amount of CPT to send, e.g. 2.5.")
        if view.recipient_error.text() or view.amount_error.text():
            return
        if not self.confirm(recipient, amount, memo):
            view.result.setText("Nothing was sent.")
            return
        # The same key while the person retries this transfer after a lost answer: never paid twice.
        key = self._retry.key_for((recipient, amount, memo))
        session = self.context.session
        self._sending = True
        view.send.setEnabled(False)
        view.result.setText(f"Sending {format_cpt(amount)} to {recipient}…")
        self.context.background.run(
            lambda: session.call(
                lambda: session.account.transfer(recipient, amount, memo=memo, idempotency_key=key)
            ),
            lambda receipt: self._sent(receipt, recipient, amount),
            self._refused,
        )

    def _sent(self, receipt: TransferReceipt, recipient: str, amount: int) -> None:
        self._retry.settle()
        self._sending = False
        view = self.view
        view.send.setEnabled(True)
        view.amount.clear()
        view.memo.clear()
        view.result.setText(
            f"Sent {format_cpt(amount)} to {recipient}. "
            f"Your balance is now {format_cpt(receipt.new_balance_micro)}."
        )
        view.balance.setText(format_cpt(receipt.new_balance_micro))
        self.refresh()
        if self.context.earnings is not None:
            self.context.earnings.refresh()

    def _refused(self, exc: Exception) -> None:
        self._sending = False
        self.view.send.setEnabled(True)
        if self._retry.settle(exc):
            self.view.result.setText(
                "The answer did not arrive, so the transfer may have gone through. Check the history "
                "before sending again; sending the same transfer again cannot pay twice."
            )
            self.refresh()
            return
        self.view.result.setText(
            sentence(exc, "The transfer could not be sent; see the log. Nothing was moved.")
        )
