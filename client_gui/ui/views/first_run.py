"""The first-run dialog (layout only): coordinator address, then sign in or create an account, then
benchmarking and registering this computer with progress, then done."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from client_gui.ui.icons import app_icon
from client_gui.ui.views.common import page_title, sentence

PAGES = ("address", "account", "register", "done")


class FirstRunView(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Welcome to HiveMind")
        self.setWindowIcon(app_icon())
        self.setMinimumSize(560, 400)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(28, 24, 28, 20)
        header = QHBoxLayout()
        logo = QLabel()
        logo.setPixmap(app_icon().pixmap(48, 48))
        header.addWidget(logo)
        self.title = page_title("Welcome to HiveMind")
        header.addWidget(self.title, 1)
        layout.addLayout(header)
        self.step = QLabel("")
        self.step.setStyleSheet("color: palette(mid);")
        layout.addWidget(self.step)
        self.stack = QStackedWidget()
        layout.addWidget(self.stack, 1)

        # 1. Coordinator address.
        address = QWidget()
        form = QVBoxLayout(address)
        form.addWidget(
            sentence(
                "HiveMind lends this computer's spare power to a coordinator and pays you in CPT "
                "for each task it runs. Which coordinator do you want to join?"
            )
        )
        address_form = QFormLayout()
        self.address = QLineEdit()
        self.address.setPlaceholderText("coordinator.example.org:50051")
        address_form.addRow("Coordinator address", self.address)
        form.addLayout(address_form)
        self.address_error = sentence(error=True)
        form.addWidget(self.address_error)
        form.addStretch(1)
        self.stack.addWidget(address)

        # 2. Sign in or create an account.
        account = QWidget()
        account_layout = QVBoxLayout(account)
        choice = QHBoxLayout()
        self.sign_in_choice = QRadioButton("I have an account: sign in")
        self.create_choice = QRadioButton("Create an account")
        self.sign_in_choice.setChecked(True)
        self.account_choice = QButtonGroup(self)
        self.account_choice.addButton(self.sign_in_choice)
        self.account_choice.addButton(self.create_choice)
        choice.addWidget(self.sign_in_choice)
        choice.addWidget(self.create_choice)
        choice.addStretch(1)
        account_layout.addLayout(choice)
        account_form = QFormLayout()
        self.username = QLineEdit()
        self.email = QLineEdit()
        self.email.setPlaceholderText("you@example.org")
        self.email_label = QLabel("Email")
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        account_form.addRow("Username", self.username)
        account_form.addRow(self.email_label, self.email)
        account_form.addRow("Password", self.password)
        account_layout.addLayout(account_form)
        self.account_error = sentence(error=True)
        account_layout.addWidget(self.account_error)
        account_layout.addStretch(1)
        self.stack.addWidget(account)

        # 3. Benchmark and registration.
        register = QWidget()
        register_layout = QVBoxLayout(register)
        register_layout.addWidget(
            sentence(
                "HiveMind now measures this computer's speed (all cores are busy for a few "
                "seconds) and registers it with the coordinator."
            )
        )
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        register_layout.addWidget(self.progress)
        self.register_status = sentence("")
        register_layout.addWidget(self.register_status)
        self.register_error = sentence(error=True)
        register_layout.addWidget(self.register_error)
        register_layout.addStretch(1)
        self.stack.addWidget(register)

        # 4. Done.
        done = QWidget()
        done_layout = QVBoxLayout(done)
        self.done_text = sentence("")
        done_layout.addWidget(self.done_text)
        done_layout.addStretch(1)
        self.stack.addWidget(done)

        buttons = QHBoxLayout()
        self.cancel_button = QPushButton("Cancel")
        self.back_button = QPushButton("Back")
        self.next_button = QPushButton("Next")
        self.next_button.setDefault(True)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        buttons.addWidget(self.back_button)
        buttons.addWidget(self.next_button)
        layout.addLayout(buttons)
        self.busy = QLabel("")
        self.busy.setAlignment(Qt.AlignmentFlag.AlignRight)
        layout.addWidget(self.busy)

    def show_page(self, name: str) -> None:
        index = PAGES.index(name)
        self.stack.setCurrentIndex(index)
        titles = {
            "address": "Welcome to HiveMind",
            "account": "Your HiveMind account",
            "register": "Setting up this computer",
            "done": "All set",
        }
        self.title.setText(titles[name])
        self.step.setText(f"Step {index + 1} of {len(PAGES)}")

    @property
    def page(self) -> str:
        return PAGES[self.stack.currentIndex()]

    def set_creating(self, creating: bool) -> None:
        self.email.setVisible(creating)
        self.email_label.setVisible(creating)
