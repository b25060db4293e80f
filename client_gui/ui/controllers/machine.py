"""Behind the Machine view: shows the latest benchmark, samples live use every ~2 s and checks Docker,
all off the GUI thread; "Re-run benchmark" asks the engine to measure and re-register."""

from __future__ import annotations

import shutil
import sys

from PySide6.QtCore import QObject, QTimer

from client_gui.engine.benchmark import BenchmarkReport
from client_gui.engine.docker_status import DockerStatus
from client_gui.engine.sysinfo import docker_status
from client_gui.engine.usage import HostUsage, UsageSampler
from client_gui.ui.context import AppContext
from client_gui.ui.views.common import ERROR_STYLE, OK_STYLE
from client_gui.ui.views.machine import MachineView

USAGE_INTERVAL_MS = 2_000
DOCKER_INTERVAL_MS = 30_000


def docker_advice(status: DockerStatus, *, platform: str = sys.platform) -> str:
    """The sentence to show: the engine's own when Docker is installed; how to install it when the
    ``docker`` program is nowhere to be found."""
    if status.available or shutil.which("docker"):
        return status.message
    if platform.startswith("linux"):
        return (
            "Docker is not installed on this computer. Install Docker Engine (for example: "
            "sudo apt install docker.io, or see https://docs.docker.com/engine/install/), start it "
            "with sudo systemctl start docker, then press Check again."
        )
    return (
        "Docker is not installed on this computer. Install Docker Desktop from "
        "https://www.docker.com/products/docker-desktop/, start it, then press Check again."
    )


def describe_hardware(report: BenchmarkReport) -> str:
    gpu = (
        f"; GPU {report.gpu_name} ({report.gpu_memory_gb:g} GB)" if report.gpu_name else "; no GPU"
    )
    model = f"{report.cpu_model}, " if report.cpu_model else ""
    return (
        f"{report.hostname}: {model}{report.cpu_cores} logical cores, "
        f"{report.memory_gb:g} GB memory{gpu}."
    )


class MachineController(QObject):
    def __init__(self, view: MachineView, context: AppContext) -> None:
        super().__init__(view)
        self.view = view
        self.context = context
        self._sampler: UsageSampler | None = None
        self._sampling = False
        self._checking = False
        self._checked_once = False
        view.rerun_button.clicked.connect(self.rerun)
        view.docker_check_button.clicked.connect(self.check_docker)
        engine = context.engine
        engine.benchmark_finished.connect(self.show_benchmark)
        engine.benchmark_running.connect(self._benchmark_running)
        engine.benchmark_done.connect(self._benchmark_done)
        if engine.last_benchmark is not None:
            self.show_benchmark(engine.last_benchmark)

        self.usage_timer = QTimer(self)
        self.usage_timer.setInterval(USAGE_INTERVAL_MS)
        self.usage_timer.timeout.connect(self.sample)
        self.usage_timer.start()
        self.docker_timer = QTimer(self)
        self.docker_timer.setInterval(DOCKER_INTERVAL_MS)
        self.docker_timer.timeout.connect(self.check_docker)
        self.docker_timer.start()
        self.sample()
        self.check_docker()

    # -- benchmark ----------------------------------------------------------------------------------

    def show_benchmark(self, report: BenchmarkReport) -> None:
        view = self.view
        view.single_score.setText(f"{report.cpu_score_single:.0f}")
        view.multi_score.setText(f"{report.cpu_score:.0f}")
        view.gpu_score.setText(f"{report.gpu_score:.0f}" if report.gpu_name else "none")
        view.hardware.setText(describe_hardware(report))

    def rerun(self) -> None:
        self.context.engine.rerun_benchmark()

    def _benchmark_running(self) -> None:
        self.view.rerun_button.setEnabled(False)
        self.view.benchmark_status.setStyleSheet("")
        self.view.benchmark_status.setText(
            "Measuring this computer (a few seconds, all cores busy)…"
        )

    def _benchmark_done(self, problem: str) -> None:
        self.view.rerun_button.setEnabled(True)
        self.view.benchmark_status.setStyleSheet(ERROR_STYLE if problem else OK_STYLE)
        self.view.benchmark_status.setText(problem or "Measured and registered again.")

    # -- live use -----------------------------------------------------------------------------------

    def sample(self) -> None:
        # Only while someone can see it: an app idling in the tray should cost nothing.
        if self._sampling or not self.view.isVisible():
            return
        self._sampling = True

        def read() -> HostUsage:
            if self._sampler is None:
                self._sampler = UsageSampler(read_gpu=self.context.preferences().use_gpu)
            return self._sampler.sample()

        self.context.background.run(read, self._show_usage, self._usage_failed)

    def _show_usage(self, usage: HostUsage) -> None:
        self._sampling = False
        view = self.view
        view.cpu_bar.setValue(round(usage.cpu_percent))
        view.memory_bar.setValue(round(usage.memory_percent))
        if usage.gpu_percent is None:
            view.gpu_bar.setEnabled(False)
            view.gpu_bar.setValue(0)
            view.gpu_note.setText("no GPU readable")
        else:
            view.gpu_bar.setEnabled(True)
            view.gpu_bar.setValue(round(usage.gpu_percent))
            view.gpu_note.setText("")

    def _usage_failed(self, exc: Exception) -> None:
        self._sampling = False

    # -- Docker -------------------------------------------------------------------------------------

    def check_docker(self) -> None:
        if self._checking or (self._checked_once and not self.view.isVisible()):
            return
        self._checked_once = True
        self._checking = True
        self.view.docker_check_button.setEnabled(False)
        self.context.background.run(docker_status, self._show_docker, self._docker_failed)

    def _show_docker(self, status: DockerStatus) -> None:
        self._checking = False
        self.view.docker_check_button.setEnabled(True)
        self.view.docker_status.setStyleSheet(OK_STYLE if status.available else ERROR_STYLE)
        self.view.docker_status.setText(docker_advice(status))

    def _docker_failed(self, exc: Exception) -> None:
        self._checking = False
        self.view.docker_check_button.setEnabled(True)
        self.view.docker_status.setStyleSheet(ERROR_STYLE)
        self.view.docker_status.setText(
            "HiveMind could not ask Docker for its status. Restart Docker, then press Check again."
        )
