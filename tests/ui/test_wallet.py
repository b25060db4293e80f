"""The Wallet view against a real coordinator: balance and paged history as the ledger has them, and a
transfer that moves exactly the confirmed amount, or nothing when declined or refused."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from client_gui.engine.account_client import AccountClient
from client_gui.engine.jobs_client import format_cpt
from client_gui.ui.context import AppContext
from client_gui.ui.controllers.wallet import WalletController, confirm_with_dialog
from client_gui.ui.views.wallet import WalletView
from coordinator.ledger import service as ledger
from tests.jobs.helpers import CPT, balance, fund
from tests.lossy_proxy import LossyProxy
from tests.support import RunningCoordinator
from tests.ui._views_support import cell, settle
from tests.ui.conftest import GRANT_CPT, Person, make_person

START = GRANT_CPT * CPT
"""What the volunteer (vera) holds when the test begins."""


class Answers:
    """Stands in for the person at the confirmation dialog: records what they were asked, answers
    ``yes``."""

    def __init__(self, yes: bool) -> None:
        self.yes = yes
        self.asked: list[tuple[str, int, str]] = []

    def __call__(self, recipient: str, amount_micro: int, memo: str) -> bool:
        self.asked.append((recipient, amount_micro, memo))
        return self.yes


def open_wallet(
    qtbot: Any, context: AppContext, answers: Answers
) -> tuple[WalletView, WalletController]:
    view = WalletView()
    qtbot.addWidget(view)
    controller = WalletController(view, context, confirm=answers)
    settle(qtbot, context, lambda: view.history.rowCount() > 0)
    return view, controller


def fill(qtbot: Any, view: WalletView, recipient: str, amount: str, memo: str = "") -> None:
    for field, text in ((view.recipient, recipient), (view.amount, amount), (view.memo, memo)):
        field.clear()
        qtbot.keyClicks(field, text)


def test_the_wallet_shows_the_balance_and_history_as_the_ledger_has_them(
    qtbot: Any, ui_coordinator: RunningCoordinator, volunteer: Person, app_context: AppContext
) -> None:
    fund(ui_coordinator, volunteer.user_id, 345_678)
    view, _ = open_wallet(qtbot, app_context, Answers(yes=False))
    assert view.balance.text() == "100.345678 CPT"
    assert view.history.rowCount() == 2
    newest = [cell(view.history, 0, col) for col in range(1, 6)]
    assert newest == ["Grant", "HiveMind", "", "+0.345678 CPT", "100.345678 CPT"]
    assert view.history_status.text() == "All 2 movements."
    assert not view.load_more.isEnabled()
    assert not view.grab().isNull()


def test_history_loads_a_page_at_a_time(
    qtbot: Any, ui_coordinator: RunningCoordinator, volunteer: Person, app_context: AppContext
) -> None:
    for n in range(1, 56):
        fund(ui_coordinator, volunteer.user_id, n)  # 55 more grants, of 1..55 µCPT
    view, _ = open_wallet(qtbot, app_context, Answers(yes=False))
    assert view.history.rowCount() == 50
    assert cell(view.history, 0, 4) == "+0.000055 CPT"  # newest first
    assert view.load_more.isEnabled()
    qtbot.mouseClick(view.load_more, Qt.MouseButton.LeftButton)
    settle(qtbot, app_context, lambda: view.history.rowCount() == 56)
    assert cell(view.history, 55, 4) == "+100 CPT"  # the oldest: the first grant
    assert cell(view.history, 55, 5) == "100 CPT"
    assert not view.load_more.isEnabled()
    assert view.balance.text() == format_cpt(START + 55 * 56 // 2)


def test_a_confirmed_transfer_moves_exactly_the_amount(
    qtbot: Any, ui_coordinator: RunningCoordinator, volunteer: Person, app_context: AppContext
) -> None:
    c = ui_coordinator
    carol = make_person(c, "carol", grant_cpt=0)
    answers = Answers(yes=True)
    view, _ = open_wallet(qtbot, app_context, answers)
    fill(qtbot, view, "carol", "2.500001", "for the GPU hours")
    qtbot.mouseClick(view.send, Qt.MouseButton.LeftButton)
    settle(qtbot, app_context, lambda: view.result.text().startswith("Sent"))
    assert answers.asked == [("carol", 2_500_001, "for the GPU hours")]
    assert balance(c, volunteer.user_id) == START - 2_500_001
    assert balance(c, carol.user_id) == 2_500_001
    assert view.result.text() == "Sent 2.500001 CPT to carol. Your balance is now 97.499999 CPT."
    settle(qtbot, app_context, lambda: view.history.rowCount() == 2)
    assert view.balance.text() == "97.499999 CPT"
    newest = [cell(view.history, 0, col) for col in range(1, 6)]
    assert newest == ["Transfer", "carol", "for the GPU hours", "−2.500001 CPT", "97.499999 CPT"]
    assert view.amount.text() == ""


def test_a_declined_confirmation_moves_nothing(
    qtbot: Any, ui_coordinator: RunningCoordinator, volunteer: Person, app_context: AppContext
) -> None:
    c = ui_coordinator
    carol = make_person(c, "carol", grant_cpt=0)
    answers = Answers(yes=False)
    view, _ = open_wallet(qtbot, app_context, answers)
    fill(qtbot, view, "carol", "3")
    qtbot.mouseClick(view.send, Qt.MouseButton.LeftButton)
    assert answers.asked == [("carol", 3 * CPT, "")]
    assert view.result.text() == "Nothing was sent."
    assert not app_context.background.busy
    assert (balance(c, volunteer.user_id), balance(c, carol.user_id)) == (START, 0)
    assert view.amount.text() == "3"


def test_refused_transfers_show_the_coordinators_sentence_and_move_nothing(
    qtbot: Any, ui_coordinator: RunningCoordinator, volunteer: Person, app_context: AppContext
) -> None:
    c = ui_coordinator
    carol = make_person(c, "carol", grant_cpt=0)
    view, _ = open_wallet(qtbot, app_context, Answers(yes=True))

    fill(qtbot, view, "carol", "100.000001")
    qtbot.mouseClick(view.send, Qt.MouseButton.LeftButton)
    settle(qtbot, app_context, lambda: "Insufficient" in view.result.text())
    assert view.result.text() == (
        "Insufficient funds: your balance is 100 CPT and this transfer needs 100.000001 CPT. "
        "Send a smaller amount."
    )
    assert view.send.isEnabled()

    fill(qtbot, view, "nobody_here", "1")
    qtbot.mouseClick(view.send, Qt.MouseButton.LeftButton)
    settle(qtbot, app_context, lambda: "nobody_here" in view.result.text())
    assert view.result.text() == (
        "There is no user named 'nobody_here'. Check the recipient's username."
    )

    assert (balance(c, volunteer.user_id), balance(c, carol.user_id)) == (START, 0)
    assert view.history.rowCount() == 1


def test_a_bad_form_says_what_to_fix_next_to_the_field_and_asks_nothing(
    qtbot: Any, ui_coordinator: RunningCoordinator, volunteer: Person, app_context: AppContext
) -> None:
    make_person(ui_coordinator, "carol", grant_cpt=0)
    answers = Answers(yes=True)
    view, _ = open_wallet(qtbot, app_context, answers)
    cases = [
        ("carol", "1.0000001", view.amount_error, "more than 6 decimals"),
        ("carol", "-2", view.amount_error, "more than 0 CPT"),
        ("carol", "two", view.amount_error, "is not an amount of CPT"),
        ("carol", "", view.amount_error, "Enter the amount"),
        ("", "1", view.recipient_error, "Enter the username"),
        (volunteer.username, "1", view.recipient_error, "That is you"),
    ]
    for recipient, amount, label, fragment in cases:
        fill(qtbot, view, recipient, amount)
        qtbot.mouseClick(view.send, Qt.MouseButton.LeftButton)
        assert fragment in label.text(), (recipient, amount, label.text())
        assert label.isVisibleTo(view)
    assert answers.asked == []
    assert balance(ui_coordinator, volunteer.user_id) == START


def test_the_confirmation_dialog_names_the_recipient_and_the_exact_amount(qtbot: Any) -> None:
    parent = QWidget()
    qtbot.addWidget(parent)
    ask = confirm_with_dialog(parent)
    seen: list[str] = []

    def answer(button: QMessageBox.StandardButton) -> None:
        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox)
        seen.append(f"{box.text()} | {box.informativeText()}")
        qtbot.mouseClick(box.button(button), Qt.MouseButton.LeftButton)

    QTimer.singleShot(0, lambda: answer(QMessageBox.StandardButton.Yes))
    assert ask("carol", 2_500_001, "thanks") is True
    QTimer.singleShot(0, lambda: answer(QMessageBox.StandardButton.Cancel))
    assert ask("carol", 1, "") is False
    assert seen == [
        'Send 2.500001 CPT to carol? | Memo: "thanks"\nA transfer cannot be undone.',
        "Send 0.000001 CPT to carol? | A transfer cannot be undone.",
    ]


def test_sending_again_after_a_lost_answer_pays_once(
    qtbot: Any, ui_coordinator: RunningCoordinator, volunteer: Person, app_context: AppContext
) -> None:
    """The transfer reaches the coordinator and is carried out, but its answer is lost on the way back.
    The app says it may have gone through; pressing Send again with the same details repeats the same
    request (same idempotency key), and the coordinator answers with the first result: paid once."""
    c = ui_coordinator
    carol = make_person(c, "carol", grant_cpt=0)
    proxy = LossyProxy(c.grpc_target)
    session = app_context.session
    direct = session.account
    session.account = AccountClient(proxy.target, token=direct.token)
    try:
        answers = Answers(yes=True)
        view, _ = open_wallet(qtbot, app_context, answers)
        fill(qtbot, view, "carol", "3")
        proxy.drop_answers.set()
        qtbot.mouseClick(view.send, Qt.MouseButton.LeftButton)
        settle(qtbot, app_context, lambda: "may have gone through" in view.result.text())
        assert proxy.answers_dropped >= 1
        assert balance(c, carol.user_id) == 3 * CPT  # it did go through
        assert view.amount.text() == "3"  # the form is kept for the retry

        proxy.drop_answers.clear()
        # The person presses Send again, as often as it takes the connection to come back.
        for _attempt in range(10):
            qtbot.mouseClick(view.send, Qt.MouseButton.LeftButton)
            settle(qtbot, app_context, lambda: not view.result.text().startswith("Sending"))
            if view.result.text().startswith("Sent"):
                break
            qtbot.wait(1500)
        assert view.result.text().startswith("Sent 3 CPT to carol"), view.result.text()
        assert balance(c, carol.user_id) == 3 * CPT  # the retry was the same transfer
        assert balance(c, volunteer.user_id) == START - 3 * CPT
        with c.coordinator.db.read() as db:
            rows, _ = ledger.list_transactions(db, carol.user_id, 50, None)
        assert [r.amount_micro for r in rows] == [3 * CPT]

        # A different transfer afterwards is a new request: it moves money again.
        fill(qtbot, view, "carol", "1")
        qtbot.mouseClick(view.send, Qt.MouseButton.LeftButton)
        settle(qtbot, app_context, lambda: view.result.text().startswith("Sent 1 CPT"))
        assert balance(c, carol.user_id) == 4 * CPT
    finally:
        session.account.close()
        session.account = direct
        proxy.close()
