from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from depot_sync.taps.tapseq import Gap, SeqState, plan_batch


def apply(state: SeqState, seqs: list[int]) -> tuple[SeqState, int, int]:
    plan = plan_batch(state, seqs)
    return plan.state, len(plan.new), plan.duplicates


def test_first_batch_in_order() -> None:
    state, new, dup = apply(SeqState(), [1, 2, 3])
    assert (state.ack, state.max_seq, state.gaps, new, dup) == (3, 3, (), 3, 0)


def test_same_batch_three_times_stores_once() -> None:
    state = SeqState()
    results = []
    for _ in range(3):
        state, new, dup = apply(state, [1, 2, 3, 4])
        results.append((state.ack, new, dup))
    assert results == [(4, 4, 0), (4, 0, 4), (4, 0, 4)]


def test_gap_holds_the_ack_until_filled() -> None:
    state, _, _ = apply(SeqState(), [1, 2, 5, 6])
    assert state.ack == 2
    assert [(g.first, g.last) for g in state.gaps] == [(3, 4)]
    state, new, dup = apply(state, [4, 6])
    assert (new, dup, state.ack) == (1, 1, 2)
    assert [(g.first, g.last) for g in state.gaps] == [(3, 3)]
    state, new, _ = apply(state, [3])
    assert (new, state.ack, state.gaps) == (1, 6, ())


def test_out_of_order_and_duplicates_inside_a_batch() -> None:
    plan = plan_batch(SeqState(), [3, 1, 3, 2, 1])
    assert plan.new == (0, 1, 3)
    assert plan.duplicates == 2
    assert plan.state.ack == 3


def test_gap_split_keeps_when_it_was_noticed() -> None:
    when = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    state = SeqState(ack=1, max_seq=10, gaps=(Gap(2, 9, when),))
    after = plan_batch(state, [5]).state
    assert after.gaps == (Gap(2, 4, when), Gap(6, 9, when))


def test_inconsistent_state_is_refused() -> None:
    with pytest.raises(ValueError, match="inconsistent"):
        SeqState(ack=3, max_seq=10, gaps=(Gap(2, 4),))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.integers(1, 60), max_size=25), max_size=12))
def test_any_sequence_of_batches_matches_a_plain_set(batches: list[list[int]]) -> None:
    state = SeqState()
    stored: set[int] = set()
    for batch in batches:
        plan = plan_batch(state, batch)
        fresh = {batch[i] for i in plan.new}
        assert len(fresh) == len(plan.new)
        assert fresh.isdisjoint(stored)
        assert fresh | stored == stored | set(batch)
        assert len(plan.new) + plan.duplicates == len(batch)
        stored |= fresh
        state = plan.state
        ack = 0
        while ack + 1 in stored:
            ack += 1
        assert state.ack == ack
        assert state.max_seq == max(stored, default=0)
        missing = {s for g in state.gaps for s in range(g.first, g.last + 1)}
        assert missing == set(range(1, state.max_seq + 1)) - stored
        assert all(a.last + 1 < b.first for a, b in zip(state.gaps, state.gaps[1:], strict=False))
