"""Fault injection: how the simulated Ministry misbehaves, set at start and changed at run time.

Each call first waits a latency drawn from the configured distribution, then
may be refused by a wrong-credentials window, then draws at most one injected
failure by the configured rates. ``budget`` limits how many calls get an
injected failure (then the service behaves again), which makes "fails twice,
then answers" exact in tests. Draws come from a seeded generator, so a run
with ``seed`` set is reproducible.
"""

from __future__ import annotations

import dataclasses
import enum
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

GarbageKind = Literal["html", "truncated", "wrong_shape", "mixed"]
_GARBAGE_KINDS: tuple[GarbageKind, ...] = ("html", "truncated", "wrong_shape")


class FaultAction(enum.StrEnum):
    """An injected failure, in the order rates are drawn."""

    SERVER_ERROR = "server_error"  # HTTP 500 with a JHipster body
    UNAVAILABLE = "unavailable"  # HTTP 503
    GATEWAY = "gateway"  # HTTP 502 with a gateway's HTML page
    THROTTLE = "throttle"  # HTTP 429, with Retry-After when configured
    GARBAGE = "garbage"  # HTTP 200 whose body is not the documented shape
    HANG = "hang"  # no answer for hang_s, then a 504


@dataclass(frozen=True, slots=True)
class Faults:
    """How the simulated service misbehaves. Every rate is a probability per call.

    Latency: uniform between ``latency_min_s`` and ``latency_max_s``, plus a
    tail: with ``slow_rate``, ``slow_s`` more. The failure rates together
    must not exceed 1. ``retry_after_s`` is sent with a 429 (``None``: no
    header). The wrong-credentials window starts ``wrong_credentials_after_s``
    after the faults are set and lasts ``wrong_credentials_for_s``: every
    call in it gets 401, whatever its credentials.
    """

    latency_min_s: float = 0.0
    latency_max_s: float = 0.0
    slow_rate: float = 0.0
    slow_s: float = 0.0
    error_rate: float = 0.0
    unavailable_rate: float = 0.0
    gateway_rate: float = 0.0
    throttle_rate: float = 0.0
    retry_after_s: int | None = 1
    garbage_rate: float = 0.0
    garbage_kind: GarbageKind = "mixed"
    hang_rate: float = 0.0
    hang_s: float = 300.0
    budget: int | None = None
    wrong_credentials_after_s: float = 0.0
    wrong_credentials_for_s: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        rates = self.action_rates()
        for name, rate in (*((a.value, r) for a, r in rates), ("slow", self.slow_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name}_rate must be between 0 and 1, got {rate}")
        if sum(rate for _, rate in rates) > 1.0 + 1e-9:
            raise ValueError("the failure rates together must not exceed 1")
        for name in (
            "latency_min_s",
            "latency_max_s",
            "slow_s",
            "hang_s",
            "wrong_credentials_after_s",
            "wrong_credentials_for_s",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.latency_min_s > self.latency_max_s:
            raise ValueError("latency_min_s must not exceed latency_max_s")
        if self.retry_after_s is not None and self.retry_after_s < 0:
            raise ValueError("retry_after_s must not be negative")
        if self.budget is not None and self.budget < 0:
            raise ValueError("budget must not be negative")

    def action_rates(self) -> tuple[tuple[FaultAction, float], ...]:
        """Each injected failure with its rate, in drawing order."""
        return (
            (FaultAction.SERVER_ERROR, self.error_rate),
            (FaultAction.UNAVAILABLE, self.unavailable_rate),
            (FaultAction.GATEWAY, self.gateway_rate),
            (FaultAction.THROTTLE, self.throttle_rate),
            (FaultAction.GARBAGE, self.garbage_rate),
            (FaultAction.HANG, self.hang_rate),
        )


@dataclass(frozen=True, slots=True)
class Injection:
    """What happens to one call."""

    latency_s: float = 0.0
    reject_credentials: bool = False
    action: FaultAction | None = None
    garbage_kind: GarbageKind = "html"


class FaultController:
    """The faults in force, changed at run time; draws one :class:`Injection` per call."""

    def __init__(
        self, faults: Faults | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._faults = Faults()
        self._set_at = clock()
        self._budget_left: int | None = None
        self._rng = random.Random()  # noqa: S311 - simulated faults, not secrets
        self.set(faults or Faults())

    def __repr__(self) -> str:
        return f"<FaultController {self._faults!r}>"

    @property
    def current(self) -> Faults:
        """The faults in force."""
        return self._faults

    @property
    def budget_left(self) -> int | None:
        """Injected failures left before the service behaves (``None``: no limit)."""
        return self._budget_left

    def set(self, faults: Faults) -> None:
        """Replace the faults; restarts the budget, the window and the draws."""
        self._faults = faults
        self._set_at = self._clock()
        self._budget_left = faults.budget
        self._rng = random.Random(faults.seed)  # noqa: S311 - simulated faults, not secrets

    def update(self, **changes: Any) -> Faults:
        """Change some fields (validated as a whole) and :meth:`set` the result."""
        faults = dataclasses.replace(self._faults, **changes)
        self.set(faults)
        return faults

    def clear(self) -> None:
        """No faults: the service behaves."""
        self.set(Faults())

    def credentials_window_open(self) -> bool:
        """Whether calls are being refused with 401 right now."""
        faults = self._faults
        if faults.wrong_credentials_for_s <= 0:
            return False
        elapsed = self._clock() - self._set_at
        start = faults.wrong_credentials_after_s
        return start <= elapsed < start + faults.wrong_credentials_for_s

    def status(self) -> dict[str, Any]:
        """The faults and their run-time state, JSON-ready."""
        return {
            "faults": dataclasses.asdict(self._faults),
            "budget_left": self._budget_left,
            "wrong_credentials_now": self.credentials_window_open(),
        }

    def draw(self) -> Injection:
        """Decide what happens to the next call."""
        faults = self._faults
        rng = self._rng
        latency = 0.0
        if faults.latency_max_s > 0:
            latency = rng.uniform(faults.latency_min_s, faults.latency_max_s)
        if faults.slow_rate and rng.random() < faults.slow_rate:
            latency += faults.slow_s
        if self.credentials_window_open():
            return Injection(latency_s=latency, reject_credentials=True)
        if self._budget_left == 0:
            return Injection(latency_s=latency)
        action = self._draw_action(rng.random())
        if action is None:
            return Injection(latency_s=latency)
        if self._budget_left is not None:
            self._budget_left -= 1
        kind = faults.garbage_kind
        if kind == "mixed":
            kind = rng.choice(_GARBAGE_KINDS)
        return Injection(latency_s=latency, action=action, garbage_kind=kind)

    def _draw_action(self, point: float) -> FaultAction | None:
        edge = 0.0
        for action, rate in self._faults.action_rates():
            edge += rate
            if rate and point < edge:
                return action
        return None
