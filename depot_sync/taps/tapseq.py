"""Which of a device's tap sequence numbers the depot holds: an ack, a maximum and gaps.

Every sequence number from 1 to ``ack`` is stored; above it, every one up to
``max_seq`` except those in ``gaps``. This small state (one row plus a few
gap rows per device) answers "is this record new?" for a whole batch without
looking at the stored taps, and gives the ack directly. :func:`plan_batch`
is pure, so the ingest path and its tests share it.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Gap:
    """Sequence numbers ``first`` to ``last`` (inclusive) are missing.

    ``noticed_at`` is when the depot first saw the gap (``None``: now, not yet stored).
    """

    first: int
    last: int
    noticed_at: dt.datetime | None = None

    @property
    def size(self) -> int:
        """How many records are missing."""
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True)
class SeqState:
    """What the depot holds of one device's sequence."""

    ack: int = 0
    max_seq: int = 0
    gaps: tuple[Gap, ...] = ()

    def __post_init__(self) -> None:
        expected_ack = self.gaps[0].first - 1 if self.gaps else self.max_seq
        if self.ack != expected_ack:
            raise ValueError(f"inconsistent sequence state: ack {self.ack}, gaps {self.gaps}")

    def holds(self, seq: int, firsts: Sequence[int] | None = None) -> bool:
        """Whether record ``seq`` is stored (``firsts``: the gaps' first numbers, precomputed)."""
        if seq <= self.ack:
            return True
        if seq > self.max_seq:
            return False
        starts = firsts if firsts is not None else [g.first for g in self.gaps]
        i = bisect.bisect_right(starts, seq) - 1
        return i < 0 or seq > self.gaps[i].last

    @property
    def missing(self) -> int:
        """How many records below ``max_seq`` are missing."""
        return sum(g.size for g in self.gaps)


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """What to do with a batch: which records are new, and the state after storing them."""

    #: Indexes into the batch of the records to store, in batch order.
    new: tuple[int, ...]
    duplicates: int
    state: SeqState
    #: Whether the gap rows need rewriting.
    gaps_changed: bool = False


def _runs(sorted_seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive runs of sorted, distinct numbers as ``(first, last)`` pairs."""
    runs: list[tuple[int, int]] = []
    for seq in sorted_seqs:
        if runs and runs[-1][1] == seq - 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


def _subtract(gaps: Sequence[Gap], runs: Sequence[tuple[int, int]]) -> list[Gap]:
    """``gaps`` without the numbers in ``runs`` (both sorted and disjoint)."""
    out: list[Gap] = []
    r = 0
    for gap in gaps:
        first = gap.first
        while r < len(runs) and runs[r][1] < first:
            r += 1
        k = r
        while k < len(runs) and runs[k][0] <= gap.last:
            lo, hi = runs[k]
            if lo > first:
                out.append(Gap(first, lo - 1, gap.noticed_at))
            first = max(first, hi + 1)
            k += 1
        if first <= gap.last:
            out.append(Gap(first, gap.last, gap.noticed_at))
    return out


def plan_batch(state: SeqState, seqs: Sequence[int]) -> BatchPlan:
    """Decide which of ``seqs`` (a batch's sequence numbers, any order) are new.

    A number already stored, or seen earlier in the same batch, is a duplicate.
    """
    if seqs and min(seqs) > state.max_seq:
        distinct = set(seqs)
        if len(distinct) == len(seqs):
            # The usual batch: every record is newer than anything stored, none repeated.
            return _apply(state, tuple(range(len(seqs))), 0, distinct)
    firsts = [g.first for g in state.gaps]
    seen: set[int] = set()
    new: list[int] = []
    duplicates = 0
    for index, seq in enumerate(seqs):
        if seq in seen or state.holds(seq, firsts):
            duplicates += 1
            continue
        seen.add(seq)
        new.append(index)
    if not new:
        return BatchPlan((), duplicates, state)
    return _apply(state, tuple(new), duplicates, seen)


def _apply(state: SeqState, new: tuple[int, ...], duplicates: int, seen: set[int]) -> BatchPlan:
    """The plan storing ``new`` (batch indexes) whose sequence numbers are ``seen``."""
    added = sorted(seen)
    new_max = max(state.max_seq, added[-1])
    candidates = list(state.gaps)
    if new_max > state.max_seq:
        # Everything new above the old maximum starts as missing; what arrived is cut out below.
        candidates.append(Gap(state.max_seq + 1, new_max))
    # Sorted and distinct: contiguous exactly when the span equals the count.
    contiguous = added[-1] - added[0] + 1 == len(added)
    runs = [(added[0], added[-1])] if contiguous else _runs(added)
    gaps = tuple(_subtract(candidates, runs))
    ack = gaps[0].first - 1 if gaps else new_max
    changed = gaps != state.gaps
    return BatchPlan(new, duplicates, SeqState(ack, new_max, gaps), changed)
