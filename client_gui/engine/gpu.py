"""What NVIDIA GPUs this computer has, a comparable GPU score for each, and their live usage.

NVML (``pynvml``, from the ``nvidia-ml-py`` package) is the source; GPUtil, which reads ``nvidia-smi``, is the
fallback. Nothing here raises on a computer without an NVIDIA GPU or driver: it reports an empty list and a
sentence saying why.

GPU score (a spec-sheet figure, not a measurement), normalized so the reference GPU scores 1000::

    compute   = cuda_cores * max_sm_clock_mhz * 2 / 1e6                 # FP32 TFLOPS (an FMA is 2 FLOPs)
    bandwidth = memory_bus_width_bits / 8 * max_memory_clock_mhz * 2 / 1000   # GB/s (double data rate)
    score     = 1000 * (0.5 * compute / REF_COMPUTE_TFLOPS
                        + 0.3 * bandwidth / REF_BANDWIDTH_GBPS
                        + 0.2 * memory_total_gb / REF_MEMORY_GB)

The reference is an NVIDIA H100 80GB HBM3 (SXM5): 16896 CUDA cores at 1980 MHz (66.9 FP32 TFLOPS),
a 5120-bit HBM3 bus at 2619 MHz (3352 GB/s), and 79.65 GiB as NVML reports it (81559 MiB). When NVML cannot
report a term (older drivers lack ``nvmlDeviceGetNumGpuCores``; GPUtil reports only memory), the score is
computed from the terms that are known, with their weights scaled up to sum to 1, and ``score_basis`` says so.
"""

from __future__ import annotations

import logging
import platform
import shutil
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

logger = logging.getLogger(__name__)

GIB = 1024**3

# The reference GPU (NVIDIA H100 80GB HBM3, SXM5) -- see the module docstring.
REFERENCE_GPU_NAME = "NVIDIA H100 80GB HBM3"
REFERENCE_GPU_SCORE = 1000.0
REF_COMPUTE_TFLOPS = 16896 * 1980 * 2 / 1e6
REF_BANDWIDTH_GBPS = 5120 / 8 * 2619 * 2 / 1000
REF_MEMORY_GB = 81559 / 1024
SCORE_WEIGHTS = {"compute": 0.5, "bandwidth": 0.3, "memory": 0.2}

# NVML return codes (stable across NVML versions; see nvml.h).
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2

GPUTIL_TIMEOUT_S = 10.0
"""How long to wait for ``nvidia-smi`` (through GPUtil); a wedged driver can make it hang."""

GpuSource = Literal["nvml", "gputil", "none"]


class NvmlApi(Protocol):
    """The part of ``pynvml`` this module calls; tests pass a small fake with these names."""

    NVMLError: type[Exception]

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlSystemGetDriverVersion(self) -> str | bytes: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...
    def nvmlDeviceGetName(self, handle: Any) -> str | bytes: ...
    def nvmlDeviceGetUUID(self, handle: Any) -> str | bytes: ...
    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any: ...
    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any: ...
    def nvmlDeviceGetNumGpuCores(self, handle: Any) -> int: ...
    def nvmlDeviceGetMaxClockInfo(self, handle: Any, clock_type: int) -> int: ...
    def nvmlDeviceGetMemoryBusWidth(self, handle: Any) -> int: ...


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as the driver reports it. Sizes are GiB; ``None`` means the driver did not say."""

    index: int
    name: str
    memory_total_gb: float
    memory_free_gb: float
    uuid: str
    driver_version: str
    utilization_percent: float | None = None
    cuda_cores: int | None = None
    max_sm_clock_mhz: int | None = None
    memory_bandwidth_gbps: float | None = None

    @property
    def fp32_tflops(self) -> float | None:
        """Peak FP32 throughput from the spec: cores x clock x 2 (one FMA per core per cycle)."""
        if not self.cuda_cores or not self.max_sm_clock_mhz:
            return None
        return self.cuda_cores * self.max_sm_clock_mhz * 2 / 1e6

    @property
    def score(self) -> float:
        """This GPU's score on the scale where the reference H100 scores 1000."""
        return gpu_score(self)

    @property
    def score_basis(self) -> str:
        """Which terms of the formula went into :attr:`score`, e.g. ``"compute+bandwidth+memory"``."""
        return "+".join(_score_terms(self)) or "nothing"


@dataclass(frozen=True)
class GpuProbe:
    """The GPUs found, where the facts came from, and a sentence for a person."""

    gpus: list[GpuInfo] = field(default_factory=list)
    source: GpuSource = "none"
    message: str = ""

    @property
    def best(self) -> GpuInfo | None:
        """The highest-scoring GPU (the one a single-GPU job would run on), or ``None``."""
        return max(self.gpus, key=gpu_score, default=None)


def _score_terms(gpu: GpuInfo) -> dict[str, float]:
    terms: dict[str, float] = {}
    if (tflops := gpu.fp32_tflops) is not None:
        terms["compute"] = tflops / REF_COMPUTE_TFLOPS
    if gpu.memory_bandwidth_gbps:
        terms["bandwidth"] = gpu.memory_bandwidth_gbps / REF_BANDWIDTH_GBPS
    if gpu.memory_total_gb > 0:
        terms["memory"] = gpu.memory_total_gb / REF_MEMORY_GB
    return terms


def gpu_score(gpu: GpuInfo) -> float:
    """The module docstring's formula, over the terms known for ``gpu``; 0.0 when none is."""
    terms = _score_terms(gpu)
    weight = sum(SCORE_WEIGHTS[name] for name in terms)
    if weight == 0:
        return 0.0
    weighted = sum(SCORE_WEIGHTS[name] * ratio for name, ratio in terms.items())
    return round(REFERENCE_GPU_SCORE * weighted / weight, 1)


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _nvml_code(exc: BaseException) -> int | None:
    code = getattr(exc, "value", None)
    return code if isinstance(code, int) else None


def _no_gpu_message(exc: BaseException) -> str:
    """A sentence for why NVML could not be used."""
    code = _nvml_code(exc)
    if code == NVML_ERROR_LIBRARY_NOT_FOUND:
        return "No NVIDIA GPU found (the NVIDIA driver is not installed)."
    if code == NVML_ERROR_DRIVER_NOT_LOADED:
        return "No NVIDIA GPU found (the NVIDIA driver is installed but not running; restart the computer)."
    if code == NVML_ERROR_NO_PERMISSION:
        return "An NVIDIA GPU may be present, but the driver refused access to it for this user."
    return f"No NVIDIA GPU could be read (the NVIDIA driver reported: {exc})."


def _load_pynvml() -> NvmlApi | None:
    try:
        import pynvml  # type: ignore[import-untyped]
    except ImportError:  # a dependency, but a broken install must not crash the worker
        logger.warning("pynvml is not importable; GPU detection falls back to nvidia-smi")
        return None
    module: NvmlApi = pynvml
    return module


def _optional(nvml: NvmlApi, call: Callable[[], Any]) -> Any:
    """A value NVML may not support on this GPU or driver: ``None`` instead of an error."""
    try:
        return call()
    except nvml.NVMLError as exc:
        logger.debug("NVML could not report a value: %s", exc)
        return None


def _read_nvml_gpu(nvml: NvmlApi, index: int, driver_version: str) -> GpuInfo:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    utilization = _optional(nvml, lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
    cores = _optional(nvml, lambda: nvml.nvmlDeviceGetNumGpuCores(handle))
    sm_clock = _optional(nvml, lambda: nvml.nvmlDeviceGetMaxClockInfo(handle, NVML_CLOCK_SM))
    mem_clock = _optional(nvml, lambda: nvml.nvmlDeviceGetMaxClockInfo(handle, NVML_CLOCK_MEM))
    bus_width = _optional(nvml, lambda: nvml.nvmlDeviceGetMemoryBusWidth(handle))
    bandwidth = bus_width / 8 * mem_clock * 2 / 1000 if bus_width and mem_clock else None
    uuid = _optional(nvml, lambda: nvml.nvmlDeviceGetUUID(handle))
    return GpuInfo(
        index=index,
        name=_text(nvml.nvmlDeviceGetName(handle)),
        memory_total_gb=round(memory.total / GIB, 2),
        memory_free_gb=round(memory.free / GIB, 2),
        uuid=_text(uuid) if uuid is not None else "",
        driver_version=driver_version,
        utilization_percent=float(utilization.gpu) if utilization is not None else None,
        cuda_cores=int(cores) if cores else None,
        max_sm_clock_mhz=int(sm_clock) if sm_clock else None,
        memory_bandwidth_gbps=round(bandwidth, 1) if bandwidth else None,
    )


def _probe_nvml(nvml: NvmlApi) -> GpuProbe:
    """Read every GPU through NVML; an NVML error from init or the count propagates to the caller."""
    nvml.nvmlInit()
    gpus: list[GpuInfo] = []
    unreadable: list[str] = []
    try:
        driver_version = _text(nvml.nvmlSystemGetDriverVersion())
        for index in range(nvml.nvmlDeviceGetCount()):
            try:
                gpus.append(_read_nvml_gpu(nvml, index, driver_version))
            except nvml.NVMLError as exc:  # e.g. "GPU is lost": report the others
                logger.warning("NVML could not read GPU %d: %s", index, exc)
                unreadable.append(f"GPU {index}: {exc}")
    finally:
        nvml.nvmlShutdown()
    if not gpus:
        detail = f"; could not read {'; '.join(unreadable)}" if unreadable else " sees none"
        return GpuProbe([], "none", f"No NVIDIA GPU found (driver {driver_version}{detail}).")
    message = _found_message(gpus)
    if unreadable:
        message += f" Could not read {'; '.join(unreadable)}."
    return GpuProbe(gpus, "nvml", message)


def _found_message(gpus: list[GpuInfo]) -> str:
    names = ", ".join(f"{gpu.name} ({gpu.memory_total_gb:.0f} GB)" for gpu in gpus)
    return f"Found {len(gpus)} NVIDIA GPU{'s' if len(gpus) > 1 else ''}: {names}."


def _probe_gputil() -> list[GpuInfo]:
    """GPUs as ``nvidia-smi`` lists them, through GPUtil; empty when it is absent, fails or hangs."""
    if shutil.which("nvidia-smi") is None and platform.system() != "Windows":
        return []  # (on Windows GPUtil also looks in the driver's default install folder)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # GPUtil imports distutils
            import GPUtil  # type: ignore[import-untyped]
    except ImportError:  # also Python 3.12+, where GPUtil's distutils import fails
        logger.info("GPUtil is not importable; no nvidia-smi fallback")
        return []

    found: list[Any] = []

    def query() -> None:
        try:
            found.extend(GPUtil.getGPUs())
        except Exception:  # GPUtil parses nvidia-smi's text and fails on anything unexpected
            logger.warning("GPUtil could not read nvidia-smi's output", exc_info=True)

    thread = threading.Thread(target=query, name="gputil-probe", daemon=True)
    thread.start()
    thread.join(GPUTIL_TIMEOUT_S)
    if thread.is_alive():
        logger.warning("nvidia-smi did not answer within %.0f s; ignoring it", GPUTIL_TIMEOUT_S)
        return []
    return [
        GpuInfo(
            index=int(gpu.id),
            name=str(gpu.name),
            memory_total_gb=round(float(gpu.memoryTotal) / 1024, 2),  # GPUtil reports MiB
            memory_free_gb=round(float(gpu.memoryFree) / 1024, 2),
            uuid=str(gpu.uuid),
            driver_version=str(gpu.driver),
            utilization_percent=round(float(gpu.load) * 100, 1),
        )
        for gpu in found
    ]


def detect_gpus(
    nvml: NvmlApi | None = None, gputil: Callable[[], list[GpuInfo]] | None = None
) -> GpuProbe:
    """Find the NVIDIA GPUs: NVML first, then ``nvidia-smi`` through GPUtil. Never raises.

    ``nvml`` and ``gputil`` replace the real ``pynvml`` module and the GPUtil probe (tests use this);
    by default the real ones are used.
    """
    nvml = nvml if nvml is not None else _load_pynvml()
    message = "No NVIDIA GPU found (the NVIDIA driver is not installed)."
    if nvml is not None:
        try:
            return _probe_nvml(nvml)
        except Exception as exc:  # NVMLError or anything odd from a broken driver: never crash
            logger.info("NVML is not usable: %r", exc)
            message = _no_gpu_message(exc)
    gpus = (gputil or _probe_gputil)()
    if gpus:
        return GpuProbe(gpus, "gputil", _found_message(gpus))
    return GpuProbe([], "none", message)


def gpu_usage_percent(nvml: NvmlApi | None = None) -> float | None:
    """The busiest GPU's current utilization (0-100), or ``None`` when no GPU can be read.

    Each call initializes and shuts down NVML, so call it from a worker thread, not a GUI slot.
    """
    nvml = nvml if nvml is not None else _load_pynvml()
    if nvml is None:
        return None
    try:
        nvml.nvmlInit()
    except Exception as exc:
        logger.debug("NVML is not usable: %r", exc)
        return None
    try:
        rates = [
            float(nvml.nvmlDeviceGetUtilizationRates(nvml.nvmlDeviceGetHandleByIndex(i)).gpu)
            for i in range(nvml.nvmlDeviceGetCount())
        ]
    except Exception as exc:
        logger.debug("NVML could not report utilization: %r", exc)
        return None
    finally:
        nvml.nvmlShutdown()
    return max(rates, default=None)
