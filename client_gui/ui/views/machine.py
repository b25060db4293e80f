"""The Machine view (layout only): benchmark scores, live CPU/memory/GPU use, Docker's status."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from client_gui.ui.views.common import card, figure, page_title, sentence


class MachineView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 20, 24, 20)
        layout.setSpacing(14)
        layout.addWidget(page_title("This computer"))

        bench_box, bench = card("Benchmark")
        scores = QHBoxLayout()
        single, self.single_score = figure("single-core score")
        multi, self.multi_score = figure("multi-core score")
        gpu, self.gpu_score = figure("GPU score")
        for widget in (single, multi, gpu):
            scores.addWidget(widget)
        scores.addStretch(1)
        bench.addLayout(scores)
        self.hardware = sentence("This computer has not been measured yet.")
        bench.addWidget(self.hardware)
        row = QHBoxLayout()
        self.rerun_button = QPushButton("Re-run benchmark")
        self.benchmark_status = sentence("")
        row.addWidget(self.rerun_button)
        row.addWidget(self.benchmark_status, 1)
        bench.addLayout(row)
        layout.addWidget(bench_box)

        use_box, use = card("Live use (the whole computer)")
        grid = QGridLayout()
        self.cpu_bar = QProgressBar()
        self.memory_bar = QProgressBar()
        self.gpu_bar = QProgressBar()
        self.gpu_note = QLabel("")
        for row_index, (name, bar) in enumerate(
            (("CPU", self.cpu_bar), ("Memory", self.memory_bar), ("GPU", self.gpu_bar))
        ):
            bar.setRange(0, 100)
            bar.setValue(0)
            bar.setFormat("%p %")
            grid.addWidget(QLabel(name), row_index, 0)
            grid.addWidget(bar, row_index, 1)
        grid.addWidget(self.gpu_note, 2, 2)
        grid.setColumnStretch(1, 1)
        use.addLayout(grid)
        layout.addWidget(use_box)

        docker_box, docker = card("Docker")
        self.docker_status = sentence("Checking Docker…")
        docker_row = QHBoxLayout()
        self.docker_check_button = QPushButton("Check again")
        docker_row.addWidget(self.docker_status, 1)
        docker_row.addWidget(self.docker_check_button)
        docker.addLayout(docker_row)
        layout.addWidget(docker_box)
        layout.addStretch(1)
