"""Live usage of this computer (CPU, memory and GPU percent) for the worker's heartbeats and the app's
status view. Sampling is cheap but not free (NVML is opened per GPU reading): call it from a worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from client_gui.engine.gpu import gpu_usage_percent

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostUsage:
    """Percentages (0-100) of the whole computer, not only HiveMind's tasks; GPU is None without one."""

    cpu_percent: float
    memory_percent: float
    gpu_percent: float | None = None


class UsageSampler:
    """Reads :class:`HostUsage`. CPU percent is measured since the previous :meth:`sample`, so the first
    sample after construction already covers the time since then, not a meaningless 0.
    """

    def __init__(
        self,
        *,
        read_gpu: bool = True,
        gpu_reader: Callable[[], float | None] = gpu_usage_percent,
    ) -> None:
        self.read_gpu = read_gpu
        self._gpu_reader = gpu_reader
        self._gpu_missing = False
        psutil.cpu_percent(interval=None)  # primes the counter the next sample compares against

    def sample(self) -> HostUsage:
        gpu: float | None = None
        # A computer without a readable GPU stays without one: stop asking NVML every heartbeat.
        if self.read_gpu and not self._gpu_missing:
            gpu = self._gpu_reader()
            if gpu is None:
                self._gpu_missing = True
                logger.debug("No GPU usage available; GPU percent will not be reported")
        return HostUsage(
            cpu_percent=float(psutil.cpu_percent(interval=None)),
            memory_percent=float(psutil.virtual_memory().percent),
            gpu_percent=gpu,
        )
