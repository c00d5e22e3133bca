"""Waiting between tries: exponential backoff with jitter, cut short when told to.

The sync loops sleep through their backoff with :func:`sleep_or_wake`, so a
reconnect (or a heartbeat saying there is news) starts the next try at once
instead of at the end of a long backoff. That is why this is not done with
stamina, whose waits cannot be interrupted.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable
from typing import Final

#: The longest a ``Retry-After`` is honoured for; a bigger one is a depot mistake.
MAX_RETRY_AFTER_S: Final = 3600.0


class Backoff:
    """Delays that double from ``initial_s`` up to ``max_s``, each with random jitter.

    A delay is drawn uniformly from the upper half of the current step, so a
    fleet that lost the depot together does not come back in lockstep.
    """

    def __init__(
        self,
        initial_s: float,
        max_s: float,
        *,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._initial = initial_s
        self._max = max_s
        self._rng = rng
        self.failures = 0

    def next_delay(self, retry_after_s: float | None = None) -> float:
        """The wait before the next try: never sooner than the server's ``Retry-After``."""
        self.failures += 1
        step = min(self._max, math.ldexp(self._initial, min(self.failures - 1, 62)))
        delay = step / 2 + self._rng() * step / 2
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
        return delay

    def reset(self) -> None:
        """A try worked: start from the shortest delay next time."""
        self.failures = 0


async def sleep_or_wake(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until ``event`` is set or ``timeout_s`` passes; clear it; whether it was set."""
    try:
        async with asyncio.timeout(max(timeout_s, 0.0)):
            await event.wait()
    except TimeoutError:
        return False
    event.clear()
    return True
