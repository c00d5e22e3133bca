"""Fault settings and draws, without HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from protocol.ministry.simulator import FaultAction, FaultController, Faults
from runtime.config import ConfigError, build
from tests.protocol.ministry.helpers import Ticker


def actions(controller: FaultController, n: int) -> list[FaultAction | None]:
    return [controller.draw().action for _ in range(n)]


def test_no_faults_means_no_injection() -> None:
    controller = FaultController()
    draws = [controller.draw() for _ in range(100)]
    assert {d.action for d in draws} == {None}
    assert {d.latency_s for d in draws} == {0.0}
    assert not any(d.reject_credentials for d in draws)


@pytest.mark.parametrize(
    ("field", "action"),
    [
        ("error_rate", FaultAction.SERVER_ERROR),
        ("unavailable_rate", FaultAction.UNAVAILABLE),
        ("gateway_rate", FaultAction.GATEWAY),
        ("throttle_rate", FaultAction.THROTTLE),
        ("garbage_rate", FaultAction.GARBAGE),
        ("hang_rate", FaultAction.HANG),
    ],
)
def test_a_rate_of_one_always_injects_its_failure(field: str, action: FaultAction) -> None:
    controller = FaultController(build(Faults, {field: 1.0}))
    assert set(actions(controller, 20)) == {action}


def test_rates_split_the_calls_and_a_seed_repeats_the_draws() -> None:
    faults = Faults(error_rate=0.25, throttle_rate=0.25, seed=42)
    first = actions(FaultController(faults), 400)
    assert first == actions(FaultController(faults), 400)
    counts = {a: first.count(a) for a in (FaultAction.SERVER_ERROR, FaultAction.THROTTLE, None)}
    assert 60 < counts[FaultAction.SERVER_ERROR] < 140
    assert 60 < counts[FaultAction.THROTTLE] < 140
    assert 140 < counts[None] < 260


def test_latency_is_drawn_from_the_distribution() -> None:
    controller = FaultController(
        Faults(latency_min_s=0.01, latency_max_s=0.02, slow_rate=0.5, slow_s=1.0, seed=1)
    )
    latencies = [controller.draw().latency_s for _ in range(200)]
    fast = [x for x in latencies if x < 0.5]
    slow = [x for x in latencies if x >= 0.5]
    assert all(0.01 <= x <= 0.02 for x in fast)
    assert all(1.01 <= x <= 1.02 for x in slow)
    assert 50 < len(slow) < 150


def test_the_budget_stops_injection_and_is_reset_by_set() -> None:
    controller = FaultController(Faults(unavailable_rate=1.0, budget=3))
    assert actions(controller, 5) == [FaultAction.UNAVAILABLE] * 3 + [None, None]
    assert controller.budget_left == 0
    controller.update(budget=1)
    assert actions(controller, 2) == [FaultAction.UNAVAILABLE, None]


def test_mixed_garbage_uses_every_kind() -> None:
    controller = FaultController(Faults(garbage_rate=1.0, seed=9))
    kinds = {controller.draw().garbage_kind for _ in range(60)}
    assert kinds == {"html", "truncated", "wrong_shape"}


def test_the_wrong_credentials_window_opens_and_closes_on_time() -> None:
    clock = Ticker()
    controller = FaultController(
        Faults(wrong_credentials_after_s=10, wrong_credentials_for_s=5, error_rate=1.0),
        clock=clock,
    )
    assert not controller.draw().reject_credentials
    clock.t += 10
    refused = controller.draw()
    assert refused.reject_credentials
    assert refused.action is None  # refused before any other fault
    assert controller.status()["wrong_credentials_now"] is True
    clock.t += 5
    assert not controller.draw().reject_credentials


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"error_rate": 1.5}, "server_error_rate"),
        ({"slow_rate": -0.1}, "slow_rate"),
        ({"error_rate": 0.6, "hang_rate": 0.6}, "exceed 1"),
        ({"latency_min_s": 0.2, "latency_max_s": 0.1}, "latency_min_s"),
        ({"hang_s": -1}, "hang_s"),
        ({"retry_after_s": -1}, "retry_after_s"),
        ({"budget": -1}, "budget"),
    ],
)
def test_nonsense_faults_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Faults(**kwargs)


def test_an_update_that_makes_nonsense_keeps_the_faults_in_force() -> None:
    controller = FaultController(Faults(error_rate=0.5))
    with pytest.raises(ValueError, match="exceed 1"):
        controller.update(unavailable_rate=0.9)
    assert controller.current == Faults(error_rate=0.5)


def test_faults_read_from_toml_style_data_with_named_errors() -> None:
    faults = build(Faults, {"latency_max_s": 1, "garbage_kind": "html", "retry_after_s": None})
    assert faults.latency_max_s == 1.0
    assert faults.retry_after_s is None
    with pytest.raises(ConfigError, match=r"faults\.error_rate: expected a number"):
        build(Faults, {"error_rate": "often"}, "faults")
