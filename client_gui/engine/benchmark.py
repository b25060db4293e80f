"""The worker's benchmark: CPU scores from a fixed workload, plus the machine facts the coordinator asks
for when a node registers (memory, cores, Docker, GPUs), gathered into one :class:`BenchmarkReport`.

CPU score: the workload is a fixed-seed mix of pure-Python integer work, sorting, dict counting, string
building, zlib and SHA-256. Every unit must produce :data:`EXPECTED_UNIT_DIGEST`, so a miscomputing
(overclocked, overheating, faulty) machine fails instead of scoring. A score of 100 is the reference machine's
speed: ``score = 100 * REFERENCE_UNIT_S / measured_unit_s``. The multi-core score runs the same units in one
process per logical core at once and sums their throughput, so an idle machine scores about
``cores * single-core score``.

Multi-core processes are started with ``spawn`` on every OS. A program that calls :func:`run_benchmark` must
do so under ``if __name__ == "__main__":`` (and a frozen app must call ``multiprocessing.freeze_support()``).
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import queue
import statistics
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from client_gui.engine import sysinfo
from client_gui.engine.gpu import GpuInfo, GpuProbe, detect_gpus

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]

WORKLOAD_SEED = 0x5EED
EXPECTED_UNIT_DIGEST = "f17912db31a3182546056e237cf99f7f86b5fe87dd2351a47d94d96442f7201f"
"""SHA-256 every correct run of :func:`workload_unit` with :data:`WORKLOAD_SEED` produces, on any OS or CPU."""

REFERENCE_UNIT_S = 0.055
"""Seconds per workload unit on the reference machine, which therefore scores 100: a 2-core Debian 12 VM
(AMD EPYC, KVM), Python 3.11. That VM was shared while it was measured, so this is its uncontended speed:
the fastest units (wall-time minimum 0.053-0.056 s, CPU-time 10th percentile 0.054 s over 300 units), not
the median of a busy run. Re-measure with ``python -m client_gui.engine.benchmark --unit-seconds`` on an
idle machine if the workload changes (and update :data:`EXPECTED_UNIT_DIGEST` with it)."""

REFERENCE_SCORE = 100.0
FULL_UNITS = 16
"""Units per measurement in a full run: about 1 s each for single- and multi-core on the reference machine."""
QUICK_UNITS = 2
PROCESS_START_TIMEOUT_S = 120.0
"""How long the spawned processes may take to start; generous for many cores on a slow disk."""
UNIT_TIMEOUT_S = 60.0
"""Per unit, for the multi-core wait; a reference unit takes about 0.06 s."""

_MASK64 = (1 << 64) - 1
_WORDS = (
    "volunteer",
    "compute",
    "hive",
    "mind",
    "worker",
    "token",
    "ledger",
    "scheduler",
    "docker",
    "node",
)
_ROUNDS = 8
_VALUES_PER_ROUND = 4000
_HASH_CHAIN = 2000


class BenchmarkError(Exception):
    """The benchmark could not produce a trustworthy score; ``str()`` is a sentence for the user."""


@dataclass(frozen=True)
class BenchmarkReport:
    """What the worker reports when registering (field names follow ``RegisterWorkerNodeRequest``)."""

    hostname: str
    cpu_cores: int
    memory_gb: float
    cpu_score: float
    """Multi-core score: all logical cores at once (100 = the reference machine's single core)."""
    cpu_score_single: float
    gpu_score: float
    """The best GPU's score on the scale where an H100 80GB scores 1000; 0.0 without a GPU."""
    gpu_memory_gb: float
    gpu_name: str
    docker_status: bool
    docker_message: str
    available_memory_gb: float
    gpus: list[GpuInfo] = field(default_factory=list)
    duration_s: float = 0.0
    cpu_model: str = ""
    docker_version: str = ""
    gpu_message: str = ""


def workload_unit(seed: int = WORKLOAD_SEED) -> str:
    """One fixed unit of CPU work (about 0.06 s on the reference machine); returns its SHA-256 hex digest.

    The pseudo-random numbers come from a 64-bit xorshift written here, not :mod:`random`, and only zlib's
    round trip and CRC (not its compressed bytes, which differ between zlib builds) enter the digest, so the
    digest is the same on every Python and platform.
    """
    digest = hashlib.sha256()
    state = seed
    for _ in range(_ROUNDS):
        values: list[int] = []
        for _ in range(_VALUES_PER_ROUND):
            state ^= (state << 13) & _MASK64
            state ^= state >> 7
            state ^= (state << 17) & _MASK64
            values.append(state)
        values.sort()
        counts: dict[int, int] = {}
        for value in values:
            counts[value % 251] = counts.get(value % 251, 0) + 1
        text = " ".join(_WORDS[v % len(_WORDS)] + str(v % 1000) for v in values).encode()
        if zlib.decompress(zlib.compress(text, 6)) != text:
            raise BenchmarkError(_WRONG_RESULT)
        chained = hashlib.sha256(text).digest()
        for _ in range(_HASH_CHAIN):
            chained = hashlib.sha256(chained).digest()
        digest.update(chained)
        digest.update(zlib.crc32(text).to_bytes(4, "little"))
        digest.update(max(counts.values()).to_bytes(4, "little"))
        digest.update(values[len(values) // 2].to_bytes(8, "little"))
    return digest.hexdigest()


_WRONG_RESULT = (
    "The CPU benchmark computed a wrong result, so this computer may be unstable (overheating, "
    "overclocking or faulty memory). HiveMind will not take work on it until the benchmark passes."
)


def _check_digests(digests: list[str]) -> None:
    wrong = [d for d in digests if d != EXPECTED_UNIT_DIGEST]
    if wrong:
        logger.error(
            "Benchmark digest mismatch: expected %s, got %s", EXPECTED_UNIT_DIGEST, wrong[0]
        )
        raise BenchmarkError(_WRONG_RESULT)


def _score(unit_seconds: float) -> float:
    return round(REFERENCE_SCORE * REFERENCE_UNIT_S / unit_seconds, 1)


def measure_single_core(units: int, on_unit: Callable[[int], None] | None = None) -> float:
    """The single-core score: the median time of ``units`` units after one warm-up unit."""
    workload_unit()  # warm-up: first-call costs (allocator, hashlib init) are not CPU speed
    seconds: list[float] = []
    digests: list[str] = []
    for done in range(1, units + 1):
        start = time.perf_counter()
        digests.append(workload_unit())
        seconds.append(time.perf_counter() - start)
        if on_unit is not None:
            on_unit(done)
    _check_digests(digests)
    return _score(statistics.median(seconds))


def _multi_core_child(go: Any, messages: Any, units: int) -> None:
    """Runs in a spawned process: warm up, say so, wait for the start signal, run, report digests."""
    try:
        workload_unit()
        messages.put(("ready", None))
        if not go.wait(PROCESS_START_TIMEOUT_S):
            return  # the parent gave up; it reports that
        messages.put(("ok", [workload_unit() for _ in range(units)]))
    except BaseException as exc:  # report anything, so the parent never waits on a dead process
        messages.put(("error", repr(exc)))


def _gather(messages: Any, workers: list[Any], kind: str, deadline: float, late: str) -> list[Any]:
    """One ``kind`` message per worker, in arrival order.

    Fails fast when a worker reports an error or dies without a word (e.g. killed for memory), and with
    the sentence ``late`` when ``deadline`` passes.
    """
    payloads: list[Any] = []
    while len(payloads) < len(workers):
        try:
            got, payload = messages.get(timeout=0.2)
        except queue.Empty:
            # A worker that reported exits with 0, even after an error; any other exit code died.
            crashed = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
            if crashed:
                logger.error("Benchmark processes died with exit codes %s", crashed)
                raise BenchmarkError(_MULTI_FAILED) from None
            if time.perf_counter() > deadline:
                raise BenchmarkError(late) from None
            continue
        if got == "error":
            logger.error("A benchmark process failed: %s", payload)
            raise BenchmarkError(_MULTI_FAILED)
        if got != kind:
            raise BenchmarkError(_MULTI_FAILED)
        payloads.append(payload)
    return payloads


_MULTI_FAILED = "The multi-core benchmark failed. See the log for details."


def measure_multi_core(processes: int, units: int) -> float:
    """The aggregate score of ``processes`` spawned processes running ``units`` units each at once.

    Timing starts when every process has started, warmed up and been told to go, so process start-up,
    which is slow under ``spawn``, does not count against the CPU.
    """
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    messages = ctx.Queue()
    workers = [
        ctx.Process(
            target=_multi_core_child,
            args=(go, messages, units),
            name=f"hivemind-benchmark-{i}",
            daemon=True,
        )
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    finished = False
    try:
        _gather(
            messages,
            workers,
            "ready",
            deadline=time.perf_counter() + PROCESS_START_TIMEOUT_S,
            late="The multi-core benchmark could not start its processes. Close other busy "
            "programs and retry.",
        )
        go.set()
        start = time.perf_counter()
        batches = _gather(
            messages,
            workers,
            "ok",
            deadline=start + UNIT_TIMEOUT_S * units,
            late="The multi-core benchmark did not finish in time. Close other busy programs "
            "and retry.",
        )
        wall = time.perf_counter() - start
        finished = True
    finally:
        # After a failure the others' work is moot: stop them now rather than wait for them.
        for worker in workers:
            worker.join(timeout=5.0 if finished else 0.0)
            if worker.is_alive():
                worker.terminate()
                worker.join()
        messages.close()
    _check_digests([digest for batch in batches for digest in batch])
    return _score(wall / (processes * units))


def run_benchmark(
    progress: Progress | None = None,
    *,
    quick: bool = False,
    processes: int | None = None,
    gpu_probe: Callable[[], GpuProbe] = detect_gpus,
) -> BenchmarkReport:
    """Measure this computer: CPU scores, memory, Docker and GPUs. About 3 s on the reference machine.

    ``progress(fraction, message)`` is called from this thread as each step starts, ending with 1.0.
    ``quick`` runs a few units only (for tests: the scores are noisier). ``processes`` defaults to the
    number of logical cores. Raises :class:`BenchmarkError` when the CPU computes a wrong result.
    """
    report = progress or (lambda _fraction, _message: None)
    started = time.perf_counter()
    units = QUICK_UNITS if quick else FULL_UNITS

    report(0.0, "Reading system information")
    cpu = sysinfo.cpu_info()
    memory = sysinfo.memory_info()
    processes = processes or cpu.logical_cores

    report(0.05, "Measuring single-core speed")
    single = measure_single_core(
        units,
        on_unit=lambda done: report(0.05 + 0.4 * done / units, "Measuring single-core speed"),
    )

    report(0.45, f"Measuring multi-core speed ({processes} processes)")
    multi = measure_multi_core(processes, units)

    report(0.85, "Checking Docker")
    docker = sysinfo.docker_status()

    report(0.92, "Looking for NVIDIA GPUs")
    probe = gpu_probe()
    best = probe.best

    report(1.0, "Benchmark finished")
    result = BenchmarkReport(
        hostname=sysinfo.hostname(),
        cpu_cores=cpu.logical_cores,
        memory_gb=memory.total_gb,
        cpu_score=multi,
        cpu_score_single=single,
        gpu_score=best.score if best else 0.0,
        gpu_memory_gb=best.memory_total_gb if best else 0.0,
        gpu_name=best.name if best else "",
        docker_status=docker.available,
        docker_message=docker.message,
        available_memory_gb=memory.available_gb,
        gpus=list(probe.gpus),
        duration_s=round(time.perf_counter() - started, 2),
        cpu_model=cpu.model,
        docker_version=docker.version,
        gpu_message=probe.message,
    )
    logger.info(
        "Benchmark: single-core %.1f, multi-core %.1f (%d processes), GPU %.1f, in %.1f s",
        single,
        multi,
        processes,
        result.gpu_score,
        result.duration_s,
    )
    return result


def main() -> None:
    """``python -m client_gui.engine.benchmark``: run a full benchmark and print the report as JSON."""
    import argparse
    import dataclasses
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--quick", action="store_true", help="run a few units only")
    parser.add_argument(
        "--unit-seconds", action="store_true", help="also print the median unit time"
    )
    args = parser.parse_args()
    result = run_benchmark(quick=args.quick)
    out = dataclasses.asdict(result)
    if args.unit_seconds:
        out["median_unit_s"] = round(
            REFERENCE_UNIT_S * REFERENCE_SCORE / result.cpu_score_single, 5
        )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
