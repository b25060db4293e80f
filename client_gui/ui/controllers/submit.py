"""Behaviour of the Submit job view: read and check the form, show the coordinator's cost estimate, upload
the input files and submit the job, list the submitted jobs (refreshed while the view is shown), show the
log of the selected one and download its results into a folder the person chooses.

Every coordinator call and every file read runs in the background. The file and folder dialogs are
injectable (``choose_files``, ``choose_folder``), so tests answer them without a modal loop.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QFileDialog, QMessageBox

from client_gui.engine.jobs_client import (
    STDOUT,
    JobEstimate,
    JobSpecError,
    JobStatus,
    Submission,
    cpt_to_micro,
    format_cpt,
)
from client_gui.ui.context import AppContext
from client_gui.ui.controllers.wallet import sentence
from client_gui.ui.retry import RetryKey
from client_gui.ui.views.earnings import fill_table
from client_gui.ui.views.submit import SubmitView
from client_gui.ui.views.wallet import set_error

logger = logging.getLogger(__name__)

REFRESH_MS = 5_000
JOBS_SHOWN = 100
HASH_CHUNK = 1024 * 1024
STDOUT_FILE = "stdout.txt"
STATE_NAMES = {
    "waiting": "Waiting for its dependencies",
    "queued": "Queued",
    "running": "Running",
    "completed": "Completed",
    "failed": "Failed",
    "cancelled": "Cancelled",
}

ChooseFiles = Callable[[], list[Path]]
ChooseFolder = Callable[[], Path | None]
ConfirmCancel = Callable[[JobStatus], bool]
"""Asks the person to confirm cancelling the job."""


class FormError(ValueError):
    """The form cannot make a job; ``str()`` says what to fix."""


@dataclass(frozen=True)
class Draft:
    """The form as read on the GUI thread: a spec without its inputs, and the files to send as inputs
    (they are hashed or uploaded in the background)."""

    spec: dict[str, Any]
    files: list[Path] = field(default_factory=list)

    def with_inputs(self, digests: list[str]) -> dict[str, Any]:
        inputs = [{"path": p.name, "sha256": d} for p, d in zip(self.files, digests, strict=True)]
        return self.spec | {"inputs": inputs}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(HASH_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise FormError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    return digest.hexdigest()


def describe_estimate(found: JobEstimate, balance_micro: int) -> str:
    tasks = f"{found.task_count} task{'s' if found.task_count != 1 else ''}"
    replicas = f"{found.replicas} replica{'s' if found.replicas != 1 else ''}"
    minutes = found.timeout_s / 60
    text = (
        f"Submitting holds {format_cpt(found.escrow_micro)} from your wallet; what is not spent comes "
        f"back when the job ends. It can cost at most {format_cpt(found.max_cost_micro)} "
        f"({tasks} × {replicas}, each using all it reserved for the full {minutes:g} min timeout"
        f"{', capped by the budget' if found.max_cost_micro < found.full_timeout_cost_micro else ''})"
        f" and at least {format_cpt(found.min_cost_micro)}. A task typically costs "
        f"{format_cpt(found.task_minute_micro)} per minute it runs. "
        f"Your balance is {format_cpt(balance_micro)}."
    )
    if balance_micro < found.escrow_micro:
        text += " That is less than the budget: lower the budget or add CPT to your wallet."
    return text


def _progress(job: JobStatus | None) -> tuple[str, str, int] | None:
    return None if job is None else (job.job_id, job.state, job.tasks_done)


def result_path(folder: Path, job: JobStatus, index: int, path: str, taken: set[str]) -> Path:
    """Where an output of task ``index`` goes in ``folder``: beside the others for a one-task job, under
    ``task-<index>/`` for an array. Refuses anything that would land outside ``folder``."""
    base = folder if job.task_count <= 1 else folder / f"task-{index}"
    if path == STDOUT:
        name = STDOUT_FILE if STDOUT_FILE not in taken else f"hivemind-{STDOUT_FILE}"
        target = base / name
    else:
        target = base / path
    root = folder.resolve()
    resolved = target.resolve()
    if resolved != root and root not in resolved.parents:
        raise FormError(f"The output '{path}' would be written outside {folder}; it was skipped.")
    return target


class SubmitController(QObject):
    def __init__(
        self,
        view: SubmitView,
        context: AppContext,
        *,
        choose_files: ChooseFiles | None = None,
        choose_folder: ChooseFolder | None = None,
        confirm_cancel: ConfirmCancel | None = None,
        refresh_ms: int = REFRESH_MS,
    ) -> None:
        super().__init__(view)
        self.view = view
        self.context = context
        self.choose_files: ChooseFiles = choose_files or self._files_dialog
        self.choose_folder: ChooseFolder = choose_folder or self._folder_dialog
        self.confirm_cancel: ConfirmCancel = confirm_cancel or self._cancel_dialog
        self._retry = RetryKey()
        self.files: list[Path] = []
        self.jobs: list[JobStatus] = []
        self.selected: JobStatus | None = None
        self._busy = False
        self._listing = False
        self._estimated_for: Draft | None = None
        """The form the shown estimate is for; Submit is enabled only while the form still says that."""
        self._timer = QTimer(self)
        self._timer.setInterval(refresh_ms)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

        view.add_inputs.clicked.connect(self.add_files)
        view.remove_input.clicked.connect(self.remove_selected_file)
        view.inputs.itemSelectionChanged.connect(
            lambda: view.remove_input.setEnabled(bool(view.inputs.selectedItems()))
        )
        view.estimate.clicked.connect(self.estimate)
        view.submit.clicked.connect(self.submit)
        view.submit.setEnabled(False)
        for line in (view.name, view.image, view.command, view.outputs, view.budget):
            line.textChanged.connect(self._form_changed)
        for number in (view.cores, view.memory_gb, view.gpus, view.timeout_min, view.replicas):
            number.valueChanged.connect(self._form_changed)
        view.network.toggled.connect(self._form_changed)
        view.jobs.itemSelectionChanged.connect(self._selection_changed)
        view.task_index.valueChanged.connect(lambda _i: self.load_detail())
        view.download.clicked.connect(self.download)
        view.cancel_job.clicked.connect(self.cancel)
        view.installEventFilter(self)
        self.refresh_jobs()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.view and event.type() == QEvent.Type.Show:
            self.refresh_jobs()
        return False

    # -- input files ---------------------------------------------------------------------------------

    def _files_dialog(self) -> list[Path]:
        names, _ = QFileDialog.getOpenFileNames(self.view, "Choose input files")
        return [Path(n) for n in names]

    def _folder_dialog(self) -> Path | None:
        name = QFileDialog.getExistingDirectory(self.view, "Download the results into")
        return Path(name) if name else None

    def add_files(self) -> None:
        for path in self.choose_files():
            if path in self.files:
                continue
            clash = next((f for f in self.files if f.name == path.name), None)
            if clash is not None:
                set_error(
                    self.view.form_error,
                    f"{path} and {clash} are both named {path.name}; inputs appear in the task's "
                    "folder by name, so rename one of them.",
                )
                continue
            self.files.append(path)
            self.view.inputs.addItem(str(path))
            self._form_changed()

    def remove_selected_file(self) -> None:
        rows = sorted(
            (self.view.inputs.row(i) for i in self.view.inputs.selectedItems()), reverse=True
        )
        for row in rows:
            self.view.inputs.takeItem(row)
            del self.files[row]
        set_error(self.view.form_error, "")
        self._form_changed()

    def _form_changed(self, *_args: object) -> None:
        """The shown estimate no longer describes the form: it must be asked for again before Submit."""
        if self._estimated_for is None:
            return
        self._estimated_for = None
        self.view.submit.setEnabled(False)
        self.view.estimate_text.setText(
            "The job changed: press Estimate to see what it would cost."
        )

    # -- the form ------------------------------------------------------------------------------------

    def draft(self) -> Draft:
        """The form as a job spec (without inputs); :class:`FormError` says what to fix."""
        v = self.view
        image = v.image.text().strip()
        if not image:
            raise FormError("Enter the Docker image to run, e.g. python:3.11-slim.")
        try:
            command = shlex.split(v.command.text())
        except ValueError:
            raise FormError("The command has a quote that is not closed.") from None
        if not command:
            raise FormError("Enter the command to run, e.g. python3 main.py.")
        outputs = [p.strip() for p in v.outputs.text().replace("\n", ",").split(",") if p.strip()]
        try:
            budget = cpt_to_micro(v.budget.text())
        except JobSpecError as exc:
            raise FormError(f"Budget: {exc}") from None
        spec: dict[str, Any] = {
            "name": v.name.text().strip(),
            "image": image,
            "command": command,
            "output_paths": outputs,
            "resources": {
                "cpu_cores": v.cores.value(),
                "memory_gb": v.memory_gb.value(),
                "gpu_count": v.gpus.value(),
            },
            "timeout_s": v.timeout_min.value() * 60,
            "replicas": v.replicas.value(),
            "network_access": v.network.isChecked(),
            "max_budget_micro": budget,
        }
        return Draft(spec, list(self.files))

    def _read_form(self) -> Draft | None:
        set_error(self.view.form_error, "")
        try:
            return self.draft()
        except FormError as exc:
            set_error(self.view.form_error, str(exc))
            return None

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        self.view.estimate.setEnabled(not busy)
        self.view.submit.setEnabled(not busy and self._estimated_for is not None)

    def estimate(self) -> None:
        """Ask the coordinator what the job in the form would cost (inputs are hashed, not sent)."""
        draft = self._read_form()
        if draft is None or self._busy:
            return
        session = self.context.session

        def work() -> tuple[JobEstimate, int]:
            spec = draft.with_inputs([file_sha256(p) for p in draft.files])
            found = session.call(partial(session.jobs.estimate, spec))
            return found, session.call(session.account.balance)

        self._estimated_for = None
        self._set_busy(True)
        self.view.estimate_text.setText("Asking the coordinator for an estimate…")
        self.context.background.run(
            work, lambda outcome: self._estimated(draft, outcome), self._form_refused
        )

    def _estimated(self, draft: Draft, outcome: tuple[JobEstimate, int]) -> None:
        self._estimated_for = draft if draft == self.draft_or_none() else None
        self._set_busy(False)
        if self._estimated_for is None:  # the form changed while the coordinator was asked
            self.view.estimate_text.setText(
                "The job changed: press Estimate to see what it would cost."
            )
            return
        self.view.estimate_text.setText(describe_estimate(*outcome))

    def draft_or_none(self) -> Draft | None:
        try:
            return self.draft()
        except FormError:
            return None

    def _form_refused(self, exc: Exception) -> None:
        self._set_busy(False)
        self.view.estimate_text.setText("")
        self.view.submit_result.setText("")
        text = (
            str(exc)
            if isinstance(exc, FormError | JobSpecError)
            else sentence(
                exc, "The coordinator could not be asked. Check the connection and try again."
            )
        )
        set_error(self.view.form_error, text)

    def submit(self) -> None:
        """Upload the inputs and submit the job as last estimated. A press after a lost answer resends
        the same request under the same idempotency key, so it never submits (or holds the budget)
        twice."""
        draft = self._read_form()
        if draft is None or self._busy:
            return
        if draft != self._estimated_for:
            set_error(self.view.form_error, "Press Estimate first, to see what the job would cost.")
            return
        # The same key while the person retries this job after a lost answer: never submitted twice.
        key = self._retry.key_for(draft)
        session = self.context.session

        def work() -> Submission:
            uploads = [session.call(partial(session.jobs.upload_file, p)) for p in draft.files]
            spec = draft.with_inputs([u.sha256 for u in uploads])
            return session.call(partial(session.jobs.submit_job, spec, key))

        self._set_busy(True)
        self.view.submit_result.setText(
            f"Uploading {len(draft.files)} input file(s) and submitting…"
            if draft.files
            else "Submitting…"
        )
        self.context.background.run(work, self._submitted, self._submit_failed)

    def _submit_failed(self, exc: Exception) -> None:
        if self._retry.settle(exc):
            self._set_busy(False)
            self.view.submit_result.setText(
                "The answer did not arrive, so the job may have been submitted. Check Your jobs; "
                "pressing Submit again with the same form cannot submit it twice."
            )
            self.refresh_jobs()
            return
        self._form_refused(exc)

    def _submitted(self, submission: Submission) -> None:
        self._retry.settle()
        self._estimated_for = None  # another job needs another look at its cost
        self._set_busy(False)
        self.view.estimate_text.setText("Press Estimate to see what the next job would cost.")
        self.view.submit_result.setText(
            f"Job {submission.job_id} submitted: {submission.task_count} task(s); "
            f"{format_cpt(submission.escrow_micro)} is held until it ends."
        )
        self.refresh_jobs(select=submission.job_id)
        if self.context.earnings is not None:
            self.context.earnings.refresh()

    # -- submitted jobs ------------------------------------------------------------------------------

    def _tick(self) -> None:
        if self.view.isVisible():
            self.refresh_jobs()

    def refresh_jobs(self, select: str = "") -> None:
        if self._listing:
            return
        self._listing = True
        session = self.context.session
        self.context.background.run(
            partial(session.call, partial(session.jobs.list, limit=JOBS_SHOWN)),
            lambda found: self._listed(found, select),
            self._list_failed,
        )

    def _listed(self, found: list[JobStatus], select: str) -> None:
        self._listing = False
        keep = select or (self.selected.job_id if self.selected else "")
        self.jobs = found
        table = self.view.jobs
        table.blockSignals(True)
        fill_table(
            table,
            [
                (
                    job.name or job.job_id[:8],
                    STATE_NAMES.get(job.state, job.state),
                    f"{job.tasks_done}/{job.task_count}",
                    format_cpt(job.charged_micro),
                    dt.datetime.fromtimestamp(job.created_at).strftime("%d %b %H:%M"),
                )
                for job in found
            ],
            right_align=frozenset({2, 3}),
            append=False,
        )
        row = next((i for i, job in enumerate(found) if job.job_id == keep), -1)
        if row >= 0:
            table.selectRow(row)
        else:
            table.clearSelection()
        table.blockSignals(False)
        self.view.jobs_status.setText("" if found else "No jobs yet. Submit one with the form.")
        previous = self.selected
        self.selected = found[row] if row >= 0 else None
        # Reload the log only when the selected job changed or moved on.
        if _progress(previous) != _progress(self.selected) or self.selected is None:
            self._show_selected()

    def _list_failed(self, exc: Exception) -> None:
        self._listing = False
        self.view.jobs_status.setText(
            sentence(exc, "The jobs could not be listed. Check the connection.")
        )

    def _selection_changed(self) -> None:
        rows = {i.row() for i in self.view.jobs.selectedItems()}
        self.selected = self.jobs[min(rows)] if rows and min(rows) < len(self.jobs) else None
        self._show_selected()

    def _show_selected(self) -> None:
        job = self.selected
        view = self.view
        view.download.setEnabled(job is not None and job.finished)
        view.cancel_job.setEnabled(job is not None and not job.finished)
        view.task_index.blockSignals(True)
        view.task_index.setMaximum(max((job.task_count if job else 1) - 1, 0))
        view.task_index.blockSignals(False)
        if job is None:
            view.log.setPlainText("")
            return
        self.load_detail()

    def load_detail(self) -> None:
        """The log of the shown task of the selected job."""
        job = self.selected
        if job is None:
            return
        job_id, index = job.job_id, self.view.task_index.value()
        session = self.context.session
        self.context.background.run(
            lambda: session.call(lambda: list(session.jobs.logs(job_id, index))),
            lambda lines: self._show_log(job_id, index, lines),
            lambda exc: self._show_log_failed(job_id, exc),
        )

    def _show_log(self, job_id: str, index: int, lines: list[tuple[str, str]]) -> None:
        if self.selected is None or self.selected.job_id != job_id:
            return
        text = "\n".join(
            (t if stream == "stdout" else f"[stderr] {t}").rstrip("\n") for stream, t in lines
        )
        state = STATE_NAMES.get(self.selected.state, self.selected.state)
        self.view.log.setPlainText(text or f"No log lines from task {index} yet ({state.lower()}).")

    def _show_log_failed(self, job_id: str, exc: Exception) -> None:
        if self.selected is not None and self.selected.job_id == job_id:
            self.view.log.setPlainText(sentence(exc, "The log could not be read."))

    # -- cancelling ----------------------------------------------------------------------------------

    def _cancel_dialog(self, job: JobStatus) -> bool:
        box = QMessageBox(self.view)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Cancel the job?")
        box.setText(
            f"Cancel the job {job.name or job.job_id}? Its running tasks are stopped, and what it has "
            "not used of its budget comes back to your wallet."
        )
        box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        box.setDefaultButton(QMessageBox.StandardButton.No)
        return box.exec() == QMessageBox.StandardButton.Yes

    def cancel(self) -> None:
        """Cancel the selected job after the person confirms; the refund is shown to the micro-CPT."""
        job = self.selected
        if job is None or job.finished or not self.confirm_cancel(job):
            return
        job_id = job.job_id
        session = self.context.session
        self.view.cancel_job.setEnabled(False)
        self.view.download_result.setText("Cancelling the job…")
        self.context.background.run(
            lambda: session.call(partial(session.jobs.cancel, job_id)),
            lambda refunded: self._cancelled(job_id, refunded),
            self._cancel_failed,
        )

    def _cancelled(self, job_id: str, refunded_micro: int) -> None:
        self.view.download_result.setText(
            f"The job was cancelled; {format_cpt(refunded_micro)} came back to your wallet."
        )
        self.context.earnings.refresh()
        self.refresh_jobs(select=job_id)

    def _cancel_failed(self, exc: Exception) -> None:
        self.view.cancel_job.setEnabled(self.selected is not None and not self.selected.finished)
        self.view.download_result.setText(
            sentence(exc, "The job could not be cancelled. Try again.")
        )

    # -- results -------------------------------------------------------------------------------------

    def download(self) -> None:
        """Ask for a folder, then download every verified output (and stdout) of every task into it."""
        job = self.selected
        if job is None:
            return
        folder = self.choose_folder()
        if folder is None:
            return
        job_id = job.job_id
        session = self.context.session

        def work() -> list[Path]:
            detail = session.call(partial(session.jobs.get, job_id))
            saved: list[Path] = []
            for task in detail.tasks:
                if not task.has_result:
                    continue
                taken = {o.path for o in task.outputs}
                for path in [o.path for o in task.outputs] + [STDOUT]:
                    dest = result_path(folder, detail, task.index, path, taken)
                    session.call(partial(session.jobs.download, job_id, task.index, path, dest))
                    saved.append(dest)
            return saved

        self.view.download.setEnabled(False)
        self.view.download_result.setText(f"Downloading the results into {folder}…")
        self.context.background.run(
            work, lambda saved: self._downloaded(folder, saved), self._download_failed
        )

    def _downloaded(self, folder: Path, saved: list[Path]) -> None:
        self.view.download.setEnabled(self.selected is not None and self.selected.finished)
        if not saved:
            self.view.download_result.setText(
                "This job has no verified results to download: none of its tasks was accepted."
            )
            return
        names = ", ".join(str(p.relative_to(folder)) for p in saved[:6])
        more = f" and {len(saved) - 6} more" if len(saved) > 6 else ""
        self.view.download_result.setText(
            f"Downloaded {len(saved)} file(s) into {folder}: {names}{more}."
        )

    def _download_failed(self, exc: Exception) -> None:
        self.view.download.setEnabled(self.selected is not None and self.selected.finished)
        text = (
            str(exc)
            if isinstance(exc, FormError)
            else sentence(exc, "The results could not be downloaded. Try again.")
        )
        self.view.download_result.setText(text)

    def stop(self) -> None:
        self._timer.stop()
