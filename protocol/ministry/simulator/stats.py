"""What the simulated service has seen: calls, calls in flight, per endpoint and per status."""

from __future__ import annotations

import itertools
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, Final

#: How many call start times are kept for tests that look at the gaps between calls.
CALL_TIMES_KEPT: Final = 10_000


class SimulatorStats:
    """Counters of one simulator; tests assert on them, the admin endpoint shows them."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.codes_asked = 0
        self.by_endpoint: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.call_times: deque[float] = deque(maxlen=CALL_TIMES_KEPT)

    def __repr__(self) -> str:
        return (
            f"<SimulatorStats calls={self.calls} in_flight={self.in_flight} "
            f"max_in_flight={self.max_in_flight}>"
        )

    def begin(self, endpoint: str) -> None:
        """A call to ``endpoint`` arrived."""
        self.calls += 1
        self.by_endpoint[endpoint] += 1
        self.call_times.append(self._clock())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def end(self, status: int | None) -> None:
        """A call finished with ``status`` (``None``: the client went away first)."""
        self.in_flight -= 1
        if status is not None:
            self.by_status[status] += 1

    def gaps(self) -> list[float]:
        """Seconds between the starts of consecutive calls kept."""
        times = list(self.call_times)
        return [later - earlier for earlier, later in itertools.pairwise(times)]

    def reset(self) -> None:
        """Zero the counters; calls still in flight stay counted as in flight."""
        self.calls = 0
        self.codes_asked = 0
        self.max_in_flight = self.in_flight
        self.by_endpoint.clear()
        self.by_status.clear()
        self.call_times.clear()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready counters."""
        return {
            "calls": self.calls,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "codes_asked": self.codes_asked,
            "by_endpoint": dict(self.by_endpoint),
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
        }
