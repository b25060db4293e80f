"""Pure pricing rules (integers of micro-CPT out, no I/O). docs/REWARDS.md walks through an example.

- A replica's usage is *checked*, not trusted: wall time cannot exceed what the coordinator itself saw between
  lease and report, CPU-seconds cannot exceed wall time × the cores leased, GPU-seconds cannot exceed wall
  time × the GPUs leased.
- Its price: normalized CPU-core-seconds × the CPU price + GPU-seconds × the GPU price + leased memory GB ×
  wall seconds × the memory price, and never less than the minimum task charge. CPU-seconds are normalized by
  the node's per-core benchmark score (100 = the reference machine), bounded to [0.25, 4] so a node cannot
  inflate its earnings by claiming an absurd score.
- When several replicas agree, each is priced on the smallest checked usage among them (as BOINC grants the
  lowest claimed credit), so inflating a report gains nothing.
- The platform fee is a share (basis points) of each charge; the worker gets the rest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MIN_CPU_FACTOR = 0.25
MAX_CPU_FACTOR = 4.0


@dataclass(frozen=True, slots=True)
class PriceTable:
    cpu_micro_per_core_second: int = 100  # 0.0001 CPT per normalized CPU-core-second
    gpu_micro_per_gpu_second: int = 2_000  # 0.002 CPT per GPU-second
    memory_micro_per_gb_second: int = 10  # 0.00001 CPT per GB-second
    platform_fee_bps: int = 1_000  # 10 %
    min_task_charge_micro: int = 1_000  # 0.001 CPT per replica

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PriceTable:
        return cls(**{k: int(v) for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class Usage:
    cpu_seconds: float = 0.0
    peak_memory_bytes: int = 0
    wall_seconds: float = 0.0
    gpu_seconds: float = 0.0


def checked_usage(
    claimed: Usage, *, observed_seconds: float, cpu_cores: float, memory_gb: float, gpu_count: int
) -> Usage:
    """Clamp a worker's claim to what the coordinator can vouch for."""

    def clamp(value: float, upper: float) -> float:
        return min(max(value, 0.0), upper) if value == value else 0.0  # NaN -> 0

    wall = clamp(claimed.wall_seconds, max(observed_seconds, 0.0))
    return Usage(
        cpu_seconds=clamp(claimed.cpu_seconds, wall * cpu_cores),
        peak_memory_bytes=int(clamp(float(claimed.peak_memory_bytes), memory_gb * 1024**3)),
        wall_seconds=wall,
        gpu_seconds=clamp(claimed.gpu_seconds, wall * gpu_count),
    )


def smallest(usages: list[Usage]) -> Usage:
    """The component-wise minimum of agreeing replicas' usage."""
    return Usage(
        cpu_seconds=min(u.cpu_seconds for u in usages),
        peak_memory_bytes=min(u.peak_memory_bytes for u in usages),
        wall_seconds=min(u.wall_seconds for u in usages),
        gpu_seconds=min(u.gpu_seconds for u in usages),
    )


def cpu_factor(cpu_score: float, cpu_cores: int) -> float:
    per_core = cpu_score / cpu_cores if cpu_cores > 0 else 0.0
    return min(max(per_core / 100.0, MIN_CPU_FACTOR), MAX_CPU_FACTOR)


def price_micro(usage: Usage, *, memory_gb: float, factor: float, prices: PriceTable) -> int:
    raw = (
        usage.cpu_seconds * factor * prices.cpu_micro_per_core_second
        + usage.gpu_seconds * prices.gpu_micro_per_gpu_second
        + memory_gb * usage.wall_seconds * prices.memory_micro_per_gb_second
    )
    return max(prices.min_task_charge_micro, round(raw))


def split_fee(charge_micro: int, prices: PriceTable) -> tuple[int, int]:
    """(worker's share, platform fee) of a charge; integer, and they add up to the charge exactly."""
    fee = charge_micro * prices.platform_fee_bps // 10_000
    return charge_micro - fee, fee


def max_replica_cost(
    *, cpu_cores: float, memory_gb: float, gpu_count: int, timeout_s: float, prices: PriceTable
) -> int:
    """The most one replica can cost: every resource fully used until the timeout, on the fastest node."""
    worst = Usage(
        cpu_seconds=cpu_cores * timeout_s, wall_seconds=timeout_s, gpu_seconds=gpu_count * timeout_s
    )
    return price_micro(worst, memory_gb=memory_gb, factor=MAX_CPU_FACTOR, prices=prices)


def minimum_job_cost(task_count: int, replicas: int, prices: PriceTable) -> int:
    """The least a job can cost: every replica of every task at the minimum charge."""
    return task_count * replicas * prices.min_task_charge_micro


def format_price_problem(task_count: int, replicas: int, prices: PriceTable) -> str:
    return (
        f"{task_count} task(s) × {replicas} replica(s) × the minimum charge of "
        f"{prices.min_task_charge_micro} µCPT"
    )
