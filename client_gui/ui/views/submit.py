"""The Submit job view: the job form with its cost estimate, and the submitted jobs with their logs and a
download of their results. Layout only; :mod:`client_gui.ui.controllers.submit` does the work."""

from __future__ import annotations

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from client_gui.ui.views.common import card, sentence
from client_gui.ui.views.earnings import page_layout, read_only_table
from client_gui.ui.views.wallet import error_label

JOB_COLUMNS = ("Name", "State", "Tasks", "Charged", "Submitted")
DEFAULT_IMAGE = "hivemind/python:3.11-minimal"


def spin(parent: QWidget, low: int, high: int, value: int, suffix: str = "") -> QSpinBox:
    box = QSpinBox(parent)
    box.setRange(low, high)
    box.setValue(value)
    box.setSuffix(suffix)
    return box


def decimal_spin(
    parent: QWidget, low: float, high: float, value: float, step: float, suffix: str
) -> QDoubleSpinBox:
    box = QDoubleSpinBox(parent)
    box.setDecimals(2)
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setValue(value)
    box.setSuffix(suffix)
    return box


class SubmitView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("submitView")
        layout = page_layout(self, "Submit a job")

        # -- the form --
        form_box, form_layout = card("New job")
        self.name = QLineEdit()
        self.name.setPlaceholderText("optional, e.g. render frames")
        self.name.setMaxLength(128)
        self.image = QLineEdit(DEFAULT_IMAGE)
        self.image.setAccessibleName("Docker image")
        self.command = QLineEdit()
        self.command.setPlaceholderText("e.g. python3 main.py --frames 10")
        self.command.setAccessibleName("Command")
        self.inputs = QListWidget()
        self.inputs.setAccessibleName("Input files")
        self.inputs.setFixedHeight(72)
        self.add_inputs = QPushButton("Add files…")
        self.remove_input = QPushButton("Remove")
        self.remove_input.setEnabled(False)
        self.outputs = QLineEdit()
        self.outputs.setPlaceholderText("files or folders the job writes, e.g. out.txt, frames/")
        self.outputs.setAccessibleName("Output paths")
        self.cores = decimal_spin(self, 0.1, 256, 1.0, 0.5, " cores")
        self.memory_gb = decimal_spin(self, 0.05, 4096, 0.5, 0.25, " GB memory")
        self.gpus = spin(self, 0, 16, 0, " GPU")
        self.timeout_min = spin(self, 1, 7 * 24 * 60, 60, " min")
        self.replicas = spin(self, 1, 10, 1)
        self.replicas.setToolTip(
            "Each task runs on this many computers; their results must agree before it is paid."
        )
        self.network = QCheckBox("Needs network access")
        self.budget = QLineEdit("1")
        self.budget.setAccessibleName("Budget in CPT")
        self.budget.setToolTip(
            "The most this job may cost. It is held from your wallet when you submit; what is not "
            "spent comes back when the job ends."
        )
        self.form_error = error_label("Problem with the job")
        self.estimate_text = sentence("Press Estimate to see what this job would cost.")
        self.estimate_text.setAccessibleName("Cost estimate")
        self.estimate = QPushButton("Estimate")
        self.submit = QPushButton("Submit")
        self.submit.setDefault(True)
        self.submit_result = sentence("")
        self.submit_result.setAccessibleName("Submission result")

        files = QHBoxLayout()
        files.addWidget(self.inputs, 1)
        file_buttons = QVBoxLayout()
        file_buttons.addWidget(self.add_inputs)
        file_buttons.addWidget(self.remove_input)
        file_buttons.addStretch(1)
        files.addLayout(file_buttons)
        resources = QHBoxLayout()
        for widget in (self.cores, self.memory_gb, self.gpus):
            resources.addWidget(widget)
        buttons = QHBoxLayout()
        buttons.addWidget(self.estimate)
        buttons.addWidget(self.submit)
        buttons.addStretch(1)
        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("Image", self.image)
        form.addRow("Command", self.command)
        form.addRow("Input files", files)
        form.addRow("Outputs", self.outputs)
        form.addRow("Resources", resources)
        form.addRow("Timeout", self.timeout_min)
        form.addRow("Replicas", self.replicas)
        form.addRow("", self.network)
        form.addRow("Budget (CPT)", self.budget)
        form_layout.addLayout(form)
        form_layout.addWidget(self.form_error)
        form_layout.addWidget(self.estimate_text)
        form_layout.addLayout(buttons)
        form_layout.addWidget(self.submit_result)
        form_layout.addStretch(1)

        # -- submitted jobs --
        jobs_box, jobs_layout = card("Your jobs")
        self.jobs = read_only_table(JOB_COLUMNS, stretch=0)
        self.jobs.setAccessibleName("Submitted jobs")
        self.jobs.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.jobs_status = sentence("")
        self.task_index = spin(self, 0, 0, 0)
        self.task_index.setPrefix("task ")
        self.task_index.setAccessibleName("Task whose log is shown")
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.log.setPlaceholderText("Select a job to see its log.")
        self.log.setAccessibleName("Job log")
        self.download = QPushButton("Download results…")
        self.download.setEnabled(False)
        self.cancel_job = QPushButton("Cancel job…")
        self.cancel_job.setEnabled(False)
        self.cancel_job.setToolTip("Stop the job; what it has not used of its budget comes back")
        self.download_result = sentence("")
        self.download_result.setAccessibleName("Download result")
        log_bar = QHBoxLayout()
        log_bar.addWidget(QLabel("Log of"))
        log_bar.addWidget(self.task_index)
        log_bar.addStretch(1)
        log_bar.addWidget(self.cancel_job)
        log_bar.addWidget(self.download)
        jobs_layout.addWidget(self.jobs, 2)
        jobs_layout.addWidget(self.jobs_status)
        jobs_layout.addLayout(log_bar)
        jobs_layout.addWidget(self.log, 2)
        jobs_layout.addWidget(self.download_result)

        splitter = QSplitter()
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(form_box)
        splitter.addWidget(jobs_box)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 1)
        layout.addWidget(splitter, 1)
