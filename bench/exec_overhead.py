"""The worker's per-job overhead: its hardened executor against a bare ``docker run --rm`` of the same command.

    python bench/exec_overhead.py --runs 20

Both run ``true`` in ``hivemind/busybox:latest`` with no network, alternating so that load on the machine
hits both alike. The executor also prepares and removes a work dir, applies every limit, watches the run and
measures usage; the bare run is the Docker CLI's own ``docker run --rm --network none IMAGE true``. Prints
the medians and their ratio (target: 1.3 or less).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from client_gui.engine.executor import DockerExecutor, ExecSpec
from client_gui.engine.images import ensure_busybox_image


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    image = ensure_busybox_image()
    spec = ExecSpec(
        image=image,
        command=["true"],
        env={},
        inputs=[],
        output_paths=[],
        cpu_cores=1.0,
        memory_bytes=256 * 1024 * 1024,
        timeout_s=60,
        max_output_bytes=64 * 1024 * 1024,
    )
    bare_cmd = ["docker", "run", "--rm", "--network", "none", image, "true"]
    executor_s: list[float] = []
    bare_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hivemind-exec-bench-") as tmp:
        executor = DockerExecutor(Path(tmp))
        executor.run(spec)  # warm both paths once (image cache, first connection)
        subprocess.run(bare_cmd, check=True, capture_output=True)
        for _ in range(args.runs):
            t = time.perf_counter()
            result = executor.run(spec)
            executor_s.append(time.perf_counter() - t)
            if result.status != "succeeded":
                print(f"executor run failed: {result.status}: {result.reason}")
                return 1
            t = time.perf_counter()
            subprocess.run(bare_cmd, check=True, capture_output=True)
            bare_s.append(time.perf_counter() - t)
    ex, bare = statistics.median(executor_s), statistics.median(bare_s)
    print("| path | median (ms) | p90 (ms) |")
    print("|---|---:|---:|")
    for name, values in (("hardened executor", executor_s), ("bare docker run --rm", bare_s)):
        p90 = sorted(values)[int(0.9 * (len(values) - 1))]
        print(f"| {name} | {1000 * statistics.median(values):.0f} | {1000 * p90:.0f} |")
    print(f"\nratio executor / bare: {ex / bare:.2f} (target ≤ 1.3), {args.runs} runs each")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
