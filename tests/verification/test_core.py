"""The verifier's rules: when replica results agree enough to accept one, when to wait or ask for more,
when to give up; the identity of a result; and how a node's trust moves."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from itertools import takewhile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.verification.core import (
    QUARANTINE_AFTER,
    TRUST_STREAK,
    Accept,
    NeedMore,
    Reported,
    TrustState,
    Unverifiable,
    Verdict,
    Wait,
    after_invalid,
    after_valid,
    decide,
    result_hash,
)


def results(*hashes: str) -> list[Reported]:
    """One reported lease per hash, on its own node: lease L0 reported the first hash, and so on."""
    return [Reported(f"L{i}", f"n{i}", h) for i, h in enumerate(hashes)]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- decide ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("hashes", "quorum", "running", "max_replicas", "verdict"),
    [
        (("a",), 1, 0, 3, Accept("a", ("L0",), ())),
        (("a", "a"), 2, 0, 3, Accept("a", ("L0", "L1"), ())),
        (("a", "b", "a"), 2, 0, 3, Accept("a", ("L0", "L2"), ("L1",))),
        (("b", "a", "c", "a"), 2, 1, 5, Accept("a", ("L1", "L3"), ("L0", "L2"))),
        (("a",), 2, 1, 3, Wait()),
        (("a", "b"), 2, 1, 3, Wait()),
        ((), 2, 2, 3, Wait()),
        ((), 2, 1, 3, NeedMore(1)),  # one running replica alone cannot make a quorum of two
        (("a", "b", "c"), 3, 1, 9, NeedMore(1)),  # 1 agrees, 1 running: one more could still not do
        ((), 2, 0, 3, NeedMore(2)),
        (("a",), 2, 0, 3, NeedMore(1)),
        (("a", "b"), 2, 0, 3, NeedMore(1)),
        (("a", "b"), 3, 0, 9, NeedMore(2)),
        (("a", "b"), 2, 0, 2, Unverifiable("", ())),
        (("a", "b", "c"), 2, 0, 3, Unverifiable("", ())),
        (("a", "b", "c"), 3, 0, 4, Unverifiable("", ())),
    ],
)
def test_decide(
    hashes: tuple[str, ...], quorum: int, running: int, max_replicas: int, verdict: Verdict
) -> None:
    got = decide(results(*hashes), quorum=quorum, running=running, max_replicas=max_replicas)
    if isinstance(verdict, Unverifiable):
        assert isinstance(got, Unverifiable)
        assert f"quorum {quorum}" in got.reason
        assert f"{max_replicas} replicas" in got.reason
    else:
        assert got == verdict


def test_an_accepted_result_does_not_wait_for_replicas_still_running() -> None:
    assert decide(results("a", "a"), quorum=2, running=3, max_replicas=5) == Accept(
        "a", ("L0", "L1"), ()
    )


reported_lists = st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=8).map(
    lambda hashes: results(*hashes)
)


@settings(max_examples=300, deadline=None)
@given(
    reported=reported_lists,
    quorum=st.integers(1, 4),
    running=st.integers(0, 3),
    extra=st.integers(0, 4),
)
def test_decide_properties(
    reported: Sequence[Reported], quorum: int, running: int, extra: int
) -> None:
    max_replicas = quorum + extra
    verdict = decide(reported, quorum=quorum, running=running, max_replicas=max_replicas)
    counts = Counter(r.result_hash for r in reported)
    best = max(counts.values(), default=0)
    by_id = {r.lease_id: r.result_hash for r in reported}
    match verdict:
        case Accept(accepted, valid, invalid):
            assert len(valid) >= quorum
            assert all(by_id[i] == accepted for i in valid)
            assert all(by_id[i] != accepted for i in invalid)
            assert sorted(valid + invalid) == sorted(by_id)
            assert counts[accepted] == best  # no other result agreed more
        case Wait():
            assert best < quorum
            assert best + running >= quorum, "waiting on replicas that cannot reach the quorum"
        case NeedMore(missing):
            assert best < quorum
            assert best + running < quorum
            assert missing >= 1
            assert best + running + missing == quorum
            assert not reported or len(reported) + running + missing <= max_replicas
        case Unverifiable():
            assert best + running < quorum
            assert len(reported) + running + (quorum - best - running) > max_replicas


# -- result_hash ---------------------------------------------------------------------------------------------
OUTPUTS = [("out/a.txt", sha("a")), ("out/b.bin", sha("b")), ("log.txt", sha("log"))]


@given(order=st.permutations(OUTPUTS))
def test_result_hash_ignores_the_order_of_outputs(order: list[tuple[str, str]]) -> None:
    assert result_hash(0, sha("hi"), order) == result_hash(0, sha("hi"), OUTPUTS)


@pytest.mark.parametrize(
    ("status", "exit_code", "stdout", "outputs"),
    [
        ("timeout", 0, sha("hi"), OUTPUTS),
        ("succeeded", 1, sha("hi"), OUTPUTS),
        ("succeeded", 0, sha("hi!"), OUTPUTS),
        ("succeeded", 0, sha("hi"), [("out/a.txt", sha("A")), *OUTPUTS[1:]]),  # a file's content
        ("succeeded", 0, sha("hi"), [("out/a2.txt", sha("a")), *OUTPUTS[1:]]),  # a file's name
        ("succeeded", 0, sha("hi"), OUTPUTS[:2]),  # a file missing
        ("succeeded", 0, sha("hi"), [*OUTPUTS, ("extra", sha(""))]),  # a file more
        ("succeeded", 0, sha("hi"), [("out/a.txt", sha("b")), ("out/b.bin", sha("a")), OUTPUTS[2]]),
    ],
    ids=["status", "exit", "stdout", "content", "name", "missing", "extra", "swapped-contents"],
)
def test_result_hash_changes_with_anything_the_run_produced(
    status: str, exit_code: int, stdout: str, outputs: list[tuple[str, str]]
) -> None:
    assert result_hash(exit_code, stdout, outputs, status) != result_hash(0, sha("hi"), OUTPUTS)


def test_result_hash_is_a_sha256_hex_digest_and_stable() -> None:
    h = result_hash(0, sha("hi"), iter(OUTPUTS))  # any iterable, consumed once
    assert len(h) == 64 and int(h, 16) >= 0
    assert h == result_hash(0, sha("hi"), list(OUTPUTS))
    assert h == result_hash(0, sha("hi"), OUTPUTS, "succeeded")  # the default status


# -- trust -------------------------------------------------------------------------------------------------
def valid_times(state: TrustState, n: int) -> TrustState:
    for _ in range(n):
        state = after_valid(state)
    return state


def test_a_streak_of_valid_results_makes_a_node_trusted() -> None:
    almost = valid_times(TrustState(), TRUST_STREAK - 1)
    assert not almost.trusted
    trusted = after_valid(almost)
    assert trusted.trusted
    assert (trusted.valid_streak, trusted.valid_results) == (TRUST_STREAK, TRUST_STREAK)


def test_one_invalid_result_resets_the_streak() -> None:
    state = after_invalid(valid_times(TrustState(), TRUST_STREAK + 3))
    assert not state.trusted
    assert (state.valid_streak, state.valid_results, state.invalid_results) == (
        0,
        TRUST_STREAK + 3,
        1,
    )
    assert not valid_times(state, TRUST_STREAK - 1).trusted
    assert valid_times(state, TRUST_STREAK).trusted


def test_repeated_invalid_results_quarantine_a_node_for_good() -> None:
    state = TrustState()
    for _ in range(QUARANTINE_AFTER - 1):
        state = valid_times(after_invalid(state), 2)
        assert not state.quarantined
    state = after_invalid(state)
    assert state.quarantined
    later = valid_times(state, 5 * TRUST_STREAK)
    assert later.quarantined
    assert not later.trusted
    assert after_invalid(later).quarantined


@settings(max_examples=200, deadline=None)
@given(outcomes=st.lists(st.booleans(), max_size=40))
def test_trust_follows_the_record(outcomes: list[bool]) -> None:
    state = TrustState()
    for ok in outcomes:
        state = after_valid(state) if ok else after_invalid(state)
    # The streak: the valid results since the last invalid one.
    streak = len(list(takewhile(bool, reversed(outcomes))))
    invalid = outcomes.count(False)
    assert state.valid_streak == streak
    assert state.valid_results == outcomes.count(True)
    assert state.invalid_results == invalid
    assert state.quarantined == (invalid >= QUARANTINE_AFTER)
    assert state.trusted == (streak >= TRUST_STREAK and invalid < QUARANTINE_AFTER)
