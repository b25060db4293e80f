"""Print what the worker sees of this computer's NVIDIA GPUs, and their scores, as JSON.

    .venv/bin/python bench/gpu_probe.py            # the probe (NVML, else nvidia-smi) and the spec score
    .venv/bin/python bench/gpu_probe.py --measure  # also a measured FP32 matmul rate, if torch is installed

On the reference GPU (NVIDIA H100 80GB HBM3) every ``score`` should read 1000.0; compare ``fp32_tflops``
(from the spec) with ``measured_fp32_tflops`` to see how far the formula is from a real kernel. Needs only
the project's virtual environment (torch is optional and never installed by the project).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from client_gui.engine import gpu


def measured_fp32_tflops(index: int, size: int = 8192, repeats: int = 20) -> float | str:
    """FP32 matmul throughput on GPU ``index`` with torch (TF32 off), or why it could not be measured."""
    try:
        import torch  # type: ignore[import-not-found]
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    torch.backends.cuda.matmul.allow_tf32 = False
    device = torch.device("cuda", index)
    a = torch.randn(size, size, device=device, dtype=torch.float32)
    b = torch.randn(size, size, device=device, dtype=torch.float32)
    for _ in range(3):  # warm up: kernel selection, clocks
        a @ b
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    return round(2 * size**3 * repeats / elapsed / 1e12, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description="Print the GPU probe and scores as JSON.")
    parser.add_argument("--measure", action="store_true", help="also time an FP32 matmul (torch)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log NVML details to stderr")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)

    started = time.perf_counter()
    probe = gpu.detect_gpus()
    probe_s = time.perf_counter() - started
    gpus: list[dict[str, Any]] = []
    for info in probe.gpus:
        row = dataclasses.asdict(info)
        row.update(score=info.score, score_basis=info.score_basis, fp32_tflops=info.fp32_tflops)
        if args.measure:
            row["measured_fp32_tflops"] = measured_fp32_tflops(info.index)
        gpus.append(row)
    best = probe.best
    print(
        json.dumps(
            {
                "source": probe.source,
                "message": probe.message,
                "gpu_score": best.score if best else 0.0,
                "gpus": gpus,
                "gpu_usage_percent": gpu.gpu_usage_percent(),
                "probe_seconds": round(probe_s, 3),
                "reference": {
                    "name": gpu.REFERENCE_GPU_NAME,
                    "score": gpu.REFERENCE_GPU_SCORE,
                    "fp32_tflops": round(gpu.REF_COMPUTE_TFLOPS, 2),
                    "bandwidth_gbps": round(gpu.REF_BANDWIDTH_GBPS, 1),
                    "memory_gb": round(gpu.REF_MEMORY_GB, 2),
                    "weights": gpu.SCORE_WEIGHTS,
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
