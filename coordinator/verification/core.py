"""Pure verification rules: what a task's replica results are worth, and how a node's trust moves.

A result is a hash of what the task produced: its exit code, its stdout and its collected output files
(``result_hash``). The coordinator computes it from blobs it received and hashed itself, so a worker cannot
claim a hash for bytes it did not deliver.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

# A node is trusted after this many consecutive results that agreed with the quorum (BOINC uses ~10).
TRUST_STREAK = 10
# Results that disagreed with the quorum before a node is quarantined (no more work).
QUARANTINE_AFTER = 3


def result_hash(
    exit_code: int,
    stdout_sha256: str,
    outputs: Iterable[tuple[str, str]],
    status: str = "succeeded",
) -> str:
    """The comparable identity of a run: how it ended (status and exit code), its stdout and each
    (path, sha256) of its outputs."""
    canonical = json.dumps(
        {"status": status, "exit": exit_code, "stdout": stdout_sha256, "outputs": sorted(outputs)},
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Reported:
    lease_id: str
    node_id: str
    result_hash: str


@dataclass(frozen=True, slots=True)
class Accept:
    result_hash: str
    valid: tuple[str, ...]  # lease ids that agreed
    invalid: tuple[str, ...]  # lease ids that disagreed


@dataclass(frozen=True, slots=True)
class Wait:
    """Not decidable yet: replicas still running can complete the quorum."""


@dataclass(frozen=True, slots=True)
class NeedMore:
    count: int


@dataclass(frozen=True, slots=True)
class Unverifiable:
    reason: str
    invalid: tuple[str, ...]


Verdict = Accept | Wait | NeedMore | Unverifiable


def decide(results: Sequence[Reported], *, quorum: int, running: int, max_replicas: int) -> Verdict:
    """Decide on a task given its reported results, its quorum, how many replicas still run, and the most
    replicas it may ever have."""
    if not results:
        # Waiting only helps when the replicas still running can reach the quorum on their own.
        return Wait() if running >= quorum else NeedMore(quorum - running)
    counts = Counter(r.result_hash for r in results)
    best_hash, best = counts.most_common(1)[0]
    if best >= quorum:
        valid = tuple(r.lease_id for r in results if r.result_hash == best_hash)
        invalid = tuple(r.lease_id for r in results if r.result_hash != best_hash)
        return Accept(best_hash, valid, invalid)
    if best + running >= quorum:
        return Wait()
    missing = quorum - best - running
    if len(results) + running + missing > max_replicas:
        return Unverifiable(
            f"The results of {len(results)} replicas did not agree (quorum {quorum}); "
            f"the limit of {max_replicas} replicas is reached.",
            invalid=(),
        )
    return NeedMore(missing)


@dataclass(frozen=True, slots=True)
class TrustState:
    valid_streak: int = 0
    valid_results: int = 0
    invalid_results: int = 0
    quarantined: bool = False
    revision: int = 0
    """How many times the node's trust was written (``nodes.trust_revision``): the higher one is newer."""

    @property
    def trusted(self) -> bool:
        return self.valid_streak >= TRUST_STREAK and not self.quarantined


def after_valid(state: TrustState) -> TrustState:
    return replace(
        state, valid_streak=state.valid_streak + 1, valid_results=state.valid_results + 1
    )


def after_invalid(state: TrustState) -> TrustState:
    invalid = state.invalid_results + 1
    return replace(
        state,
        valid_streak=0,
        invalid_results=invalid,
        quarantined=state.quarantined or invalid >= QUARANTINE_AFTER,
    )
