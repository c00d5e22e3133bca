"""A circuit breaker: stop calling a service that keeps failing, and try again later.

CLOSED lets every call through and counts consecutive failures. At the
threshold it turns OPEN: calls fail fast with :class:`CircuitOpen` until the
cool-down is over. Then it is HALF_OPEN: one probe call goes through while
the others keep failing fast; the probe's success closes the breaker, its
failure opens it for another cool-down.

Only failures to get an answer count. "Not found" and "expired" are answers
and count as successes.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from protocol.ministry.errors import CircuitOpen


class BreakerState(enum.StrEnum):
    """Whether calls go through."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerStatus:
    """What operations see: the state, the failure streak and the cool-down left."""

    state: BreakerState
    consecutive_failures: int
    retry_in_s: float
    times_opened: int


class CircuitBreaker:
    """Consecutive-failure breaker; not thread-safe, meant for one event loop."""

    def __init__(
        self,
        threshold: int,
        cooldown_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1:
            raise ValueError("the breaker threshold must be at least 1")
        if cooldown_s < 0:
            raise ValueError("the breaker cool-down must not be negative")
        self._threshold = threshold
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_out = False
        self._times_opened = 0

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.state} failures={self._failures}/{self._threshold}>"

    @property
    def state(self) -> BreakerState:
        """The state now (OPEN turns HALF_OPEN by itself once the cool-down is over)."""
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at < self._cooldown_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def status(self) -> BreakerStatus:
        """A snapshot for display."""
        return BreakerStatus(
            state=self.state,
            consecutive_failures=self._failures,
            retry_in_s=self._retry_in(),
            times_opened=self._times_opened,
        )

    def acquire(self) -> bool:
        """Ask to make a call; raise :class:`CircuitOpen` if it may not.

        Returns whether the call is the half-open probe. Every successful
        ``acquire`` must be followed by exactly one of :meth:`succeeded`,
        :meth:`failed` or :meth:`abandoned` with that value.
        """
        state = self.state
        if state is BreakerState.CLOSED:
            return False
        if state is BreakerState.OPEN or self._probe_out:
            raise CircuitOpen(self._retry_in())
        self._probe_out = True
        return True

    def succeeded(self, probe: bool) -> None:
        """The call got an answer: close the breaker."""
        if probe:
            self._probe_out = False
        self._failures = 0
        self._opened_at = None

    def failed(self, probe: bool) -> None:
        """The call got no answer: count it, and open at the threshold."""
        if probe:
            self._probe_out = False
        self._failures += 1
        if probe or (self._opened_at is None and self._failures >= self._threshold):
            self._open()

    def abandoned(self, probe: bool) -> None:
        """The caller gave up on the call (cancelled); a cancelled probe counts as a failure."""
        if probe:
            self.failed(probe)

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._times_opened += 1

    def _retry_in(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._cooldown_s - (self._clock() - self._opened_at))
