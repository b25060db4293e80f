"""What a job would cost, before it is submitted: the escrow it would hold, the most and the least it can
cost, and a typical cost per task per minute of run time, all from the coordinator's current price table.

An estimate checks the spec exactly as submit does (the same :func:`~coordinator.jobs.spec.parse_spec`, the
same minimum-budget rule, the same form of input hashes), so a spec an estimate accepts is refused at submit
only for what depends on stored state: an input never uploaded, a dependency that is not one of yours, a
wallet that cannot hold the budget. It writes nothing and holds nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from coordinator.errors import InvalidArgument
from coordinator.jobs.blobs import check_sha256
from coordinator.jobs.spec import JobSpec, parse_spec
from coordinator.ledger.service import format_cpt
from coordinator.rewards import pricing

MAX_INT64 = 2**63 - 1
REFERENCE_FACTOR = 1.0
"""The CPU factor of the reference machine (a per-core benchmark score of 100)."""


@dataclass(frozen=True, slots=True)
class Estimate:
    """Integer micro-CPT throughout."""

    task_count: int
    replicas: int
    timeout_s: int
    escrow_micro: int
    """Held from the wallet at submission: the whole budget; what is not spent is refunded at the end."""
    max_cost_micro: int
    """The most the job can cost: ``full_timeout_cost_micro`` capped by the budget."""
    full_timeout_cost_micro: int
    """Every replica of every task using all it reserved until the timeout, on the fastest node the
    pricing allows (CPU factor 4)."""
    min_cost_micro: int
    """Every replica of every task at the minimum charge."""
    task_minute_micro: int
    """One task (all its replicas) for one minute on the reference machine, using the cores, memory and
    GPUs it reserved: the typical rate a job that keeps its cores busy is charged at."""
    platform_fee_bps: int

    @property
    def budget_may_run_out(self) -> bool:
        """Whether a job that used everything it reserved until the timeout would spend the whole budget."""
        return self.full_timeout_cost_micro > self.escrow_micro


def check_budget(spec: JobSpec, prices: pricing.PriceTable) -> None:
    """Refuse a budget below the job's minimum cost (every replica of every task at the minimum charge).
    The rule submit applies; the sentence is the one submit gives."""
    minimum = pricing.minimum_job_cost(spec.task_count, spec.replicas, prices)
    if spec.max_budget_micro < minimum:
        raise InvalidArgument(
            f"The budget of {format_cpt(spec.max_budget_micro)} is below this job's minimum cost of "
            f"{format_cpt(minimum)} "
            f"({pricing.format_price_problem(spec.task_count, spec.replicas, prices)}). "
            "Raise max_budget_micro."
        )


def estimate(
    raw_spec: dict[str, Any], *, prices: pricing.PriceTable, default_max_attempts: int
) -> Estimate:
    """The cost of the job ``raw_spec`` describes, or the :class:`InvalidArgument` submit would raise."""
    spec = parse_spec(raw_spec, default_max_attempts=default_max_attempts)
    check_budget(spec, prices)
    for item in spec.inputs:
        if item.sha256:
            check_sha256(item.sha256, f"sha256 of input '{item.path}'")
    res = spec.resources
    replicas_in_all = spec.task_count * spec.replicas
    per_replica = pricing.max_replica_cost(
        cpu_cores=res.cpu_cores,
        memory_gb=res.memory_gb,
        gpu_count=res.gpu_count,
        timeout_s=spec.timeout_s,
        prices=prices,
    )
    full = min(per_replica * replicas_in_all, MAX_INT64)
    # A rate, not a charge: the per-replica minimum applies once per run, not once per minute.
    rate_prices = dataclasses.replace(prices, min_task_charge_micro=0)
    minute = pricing.Usage(
        cpu_seconds=res.cpu_cores * 60, wall_seconds=60, gpu_seconds=res.gpu_count * 60
    )
    per_minute = pricing.price_micro(
        minute, memory_gb=res.memory_gb, factor=REFERENCE_FACTOR, prices=rate_prices
    )
    return Estimate(
        task_count=spec.task_count,
        replicas=spec.replicas,
        timeout_s=spec.timeout_s,
        escrow_micro=spec.max_budget_micro,
        max_cost_micro=min(full, spec.max_budget_micro),
        full_timeout_cost_micro=full,
        min_cost_micro=pricing.minimum_job_cost(spec.task_count, spec.replicas, prices),
        task_minute_micro=per_minute * spec.replicas,
        platform_fee_bps=prices.platform_fee_bps,
    )
