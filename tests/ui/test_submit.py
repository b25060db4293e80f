"""The Submit job view against a real coordinator and real workers (Docker): fill the form, see the
coordinator's estimate, submit with an input file, watch the job finish, read its log and download its
results into a chosen folder; and a form that cannot make a job says why and sends nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt

from client_gui.engine.jobs_client import JobsClient, format_cpt
from client_gui.ui.context import AppContext
from client_gui.ui.controllers.submit import SubmitController
from client_gui.ui.views.submit import SubmitView
from tests.jobs.helpers import CPT, balance, counts
from tests.support import RunningCoordinator
from tests.ui._views_support import cell, settle, volunteers
from tests.ui.conftest import BUSYBOX, GRANT_CPT, Person

START = GRANT_CPT * CPT

SCRIPT = "mkdir -p out && tr a-z A-Z < words.txt > out/shout.txt && echo shouted"


class Dialogs:
    """Answers the file and folder dialogs as a person would, without a modal loop."""

    def __init__(self) -> None:
        self.files: list[Path] = []
        self.folder: Path | None = None
        self.folders_asked = 0

    def choose_files(self) -> list[Path]:
        return list(self.files)

    def choose_folder(self) -> Path | None:
        self.folders_asked += 1
        return self.folder


def open_submit(
    qtbot: Any, context: AppContext, dialogs: Dialogs
) -> tuple[SubmitView, SubmitController]:
    view = SubmitView()
    qtbot.addWidget(view)
    view.resize(1100, 700)
    controller = SubmitController(
        view,
        context,
        choose_files=dialogs.choose_files,
        choose_folder=dialogs.choose_folder,
        refresh_ms=300,
    )
    view.show()
    return view, controller


def click(qtbot: Any, button: Any) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def type_into(qtbot: Any, field: Any, text: str) -> None:
    field.clear()
    qtbot.keyClicks(field, text)


def test_submit_a_job_with_an_input_and_download_its_result(
    qtbot: Any,
    ui_coordinator: RunningCoordinator,
    volunteer: Person,
    app_context: AppContext,
    tmp_path: Path,
) -> None:
    c = ui_coordinator
    words = tmp_path / "words.txt"
    words.write_text("hello volunteers\n")
    dialogs = Dialogs()
    view, controller = open_submit(qtbot, app_context, dialogs)
    settle(qtbot, app_context, lambda: "No jobs yet" in view.jobs_status.text())

    type_into(qtbot, view.name, "shout")
    type_into(qtbot, view.image, BUSYBOX)
    type_into(qtbot, view.command, f"sh -c '{SCRIPT}'")
    dialogs.files = [words]
    click(qtbot, view.add_inputs)
    assert view.inputs.count() == 1
    first = view.inputs.item(0)
    assert first is not None and first.text() == str(words)
    type_into(qtbot, view.outputs, "out/shout.txt")
    view.cores.setValue(0.5)
    view.memory_gb.setValue(0.25)
    view.timeout_min.setValue(2)
    view.replicas.setValue(1)
    type_into(qtbot, view.budget, "1")
    assert not view.submit.isEnabled()  # not before the cost was shown

    click(qtbot, view.estimate)
    settle(qtbot, app_context, lambda: "at most" in view.estimate_text.text())
    # By hand from the default prices: one replica, 0.5 cores × 120 s × 4 × 100 + 0.25 GB × 120 s × 10
    # = 24,300 µCPT at most; per minute on the reference machine 0.5 × 60 × 100 + 0.25 × 60 × 10.
    text = view.estimate_text.text()
    assert "Submitting holds 1 CPT from your wallet" in text
    assert "at most 0.0243 CPT" in text and "at least 0.001 CPT" in text
    assert "0.00315 CPT per minute" in text
    assert "Your balance is 100 CPT." in text
    assert counts(c)["jobs"] == 0 and balance(c, volunteer.user_id) == START  # nothing held
    assert view.submit.isEnabled()

    with volunteers(c, ["bob", "carol"], tmp_path):
        click(qtbot, view.submit)
        settle(qtbot, app_context, lambda: "submitted" in view.submit_result.text())
        assert "1 CPT is held until it ends" in view.submit_result.text()
        # the new job is listed and selected; the list refreshes until it has completed
        settle(
            qtbot,
            app_context,
            lambda: view.jobs.rowCount() == 1 and cell(view.jobs, 0, 1) == "Completed",
            timeout_s=180,
        )
    assert cell(view.jobs, 0, 0) == "shout"
    assert controller.selected is not None and controller.selected.name == "shout"
    settle(qtbot, app_context, lambda: "shouted" in view.log.toPlainText())
    assert view.download.isEnabled()

    dialogs.folder = tmp_path / "results"
    dialogs.folder.mkdir()
    click(qtbot, view.download)
    settle(qtbot, app_context, lambda: view.download_result.text().startswith("Downloaded"))
    assert dialogs.folders_asked == 1
    assert (dialogs.folder / "out" / "shout.txt").read_text() == "HELLO VOLUNTEERS\n"
    assert (dialogs.folder / "stdout.txt").read_text() == "shouted\n"
    assert view.download_result.text() == (
        f"Downloaded 2 file(s) into {dialogs.folder}: out/shout.txt, stdout.txt."
    )
    # what was charged is what the list says, and the rest of the budget came back
    with JobsClient(c.grpc_target, token=volunteer.token) as client:
        (job,) = client.list()
    assert balance(c, volunteer.user_id) == START - job.charged_micro
    settle(qtbot, app_context, lambda: cell(view.jobs, 0, 3) == format_cpt(job.charged_micro))


def test_a_form_that_cannot_make_a_job_says_why_and_sends_nothing(
    qtbot: Any,
    ui_coordinator: RunningCoordinator,
    volunteer: Person,
    app_context: AppContext,
    tmp_path: Path,
) -> None:
    c = ui_coordinator
    dialogs = Dialogs()
    view, _ = open_submit(qtbot, app_context, dialogs)
    type_into(qtbot, view.image, BUSYBOX)
    type_into(qtbot, view.command, "echo hi")

    # checked here, before anything is sent
    local = [
        (view.command, "", "Enter the command to run"),
        (view.command, "sh -c 'echo", "a quote that is not closed"),
        (view.budget, "0.0000001", "more than 6 decimals"),
        (view.budget, "lots", "is not an amount of CPT"),
    ]
    for field, text, fragment in local:
        saved = field.text()
        type_into(qtbot, field, text)
        click(qtbot, view.estimate)
        assert fragment in view.form_error.text(), (text, view.form_error.text())
        assert view.form_error.isVisibleTo(view)
        type_into(qtbot, field, saved)

    # refused by the coordinator, with its sentence; Submit stays off without an estimate
    type_into(qtbot, view.image, "Not An Image!")
    click(qtbot, view.estimate)
    settle(qtbot, app_context, lambda: "not a valid image name" in view.form_error.text())
    assert not view.submit.isEnabled()
    type_into(qtbot, view.image, BUSYBOX)
    type_into(qtbot, view.budget, "0.000001")
    view.replicas.setValue(2)
    click(qtbot, view.estimate)
    settle(qtbot, app_context, lambda: "minimum cost of 0.002 CPT" in view.form_error.text())
    assert not view.submit.isEnabled()

    # an estimate is for the form as it was: a change asks for a new one before Submit
    type_into(qtbot, view.budget, "1")
    click(qtbot, view.estimate)
    settle(qtbot, app_context, lambda: view.submit.isEnabled())
    view.timeout_min.setValue(5)
    assert not view.submit.isEnabled()
    assert "press Estimate" in view.estimate_text.text()

    # two inputs cannot share a name: they appear in the task's folder by name
    first, second = tmp_path / "a" / "data.csv", tmp_path / "b" / "data.csv"
    for path in (first, second):
        path.parent.mkdir()
        path.write_text("1,2\n")
    dialogs.files = [first, second]
    click(qtbot, view.add_inputs)
    assert view.inputs.count() == 1
    assert "both named data.csv" in view.form_error.text()
    view.inputs.setCurrentRow(0)
    click(qtbot, view.remove_input)
    assert view.inputs.count() == 0

    app_context.background.wait_idle(10)
    assert counts(c)["jobs"] == 0 and counts(c)["blobs"] == 0
    assert balance(c, volunteer.user_id) == START
    assert view.jobs.rowCount() == 0


def test_cancel_a_queued_job_after_confirming_and_get_the_budget_back(
    qtbot: Any,
    ui_coordinator: RunningCoordinator,
    volunteer: Person,
    app_context: AppContext,
) -> None:
    c = ui_coordinator
    # No volunteer runs anything here: the job stays queued until it is cancelled.
    with JobsClient(c.grpc_target, token=volunteer.token) as client:
        submitted = client.submit_job(
            {"name": "waits", "image": BUSYBOX, "command": "true", "budget_cpt": "2"}
        )
    assert balance(c, volunteer.user_id) == START - 2 * CPT
    answers: list[bool] = []
    asked: list[str] = []

    def confirm(job: Any) -> bool:
        asked.append(job.job_id)
        return answers.pop(0)

    view = SubmitView()
    qtbot.addWidget(view)
    controller = SubmitController(view, app_context, confirm_cancel=confirm, refresh_ms=300)
    view.show()
    settle(qtbot, app_context, lambda: view.jobs.rowCount() == 1)
    view.jobs.selectRow(0)
    assert view.cancel_job.isEnabled() and not view.download.isEnabled()

    answers.append(False)  # the person thinks again: nothing is sent
    click(qtbot, view.cancel_job)
    app_context.background.wait_idle(10)
    assert asked == [submitted.job_id]
    assert balance(c, volunteer.user_id) == START - 2 * CPT

    answers.append(True)
    click(qtbot, view.cancel_job)
    settle(qtbot, app_context, lambda: "was cancelled" in view.download_result.text())
    assert view.download_result.text() == ("The job was cancelled; 2 CPT came back to your wallet.")
    assert balance(c, volunteer.user_id) == START
    settle(qtbot, app_context, lambda: cell(view.jobs, 0, 1) == "Cancelled")
    assert not view.cancel_job.isEnabled()
    controller.stop()
