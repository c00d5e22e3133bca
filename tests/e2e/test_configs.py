"""The demo's configuration files, read by the real programs' own loaders."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

import pytest

from deploy.demo.configs import (
    MINISTRY_USER,
    DemoPolicy,
    DepotTuning,
    ValidatorTuning,
    depot_sections,
    policy_barring,
    toml_table,
    toml_value,
    validator_toml,
)
from depot_sync.cli import main as depot_main
from depot_sync.config import load as load_depot_config
from depot_sync.operations.policy import load_policy
from protocol.messages import Behaviour
from protocol.risk import ISTANBUL, Groups
from runtime.config import load_config
from validator.config import ValidatorConfig
from validator.decide import may_travel_now

MOMENTS = [
    dt.datetime(2026, 11, 22, hour, 37, tzinfo=ISTANBUL).astimezone(dt.UTC) for hour in range(24)
]


@pytest.mark.parametrize("now", MOMENTS, ids=lambda m: m.astimezone(ISTANBUL).strftime("%H:%M"))
def test_the_policy_bars_both_groups_now_and_for_the_next_hours(
    now: dt.datetime, tmp_path: Path
) -> None:
    demo = policy_barring(now)
    path = tmp_path / "policy.toml"
    path.write_text(demo.toml(), encoding="utf-8")
    policy = load_policy(path, issued_ms=0)  # the depot's own reading of the file
    assert {rule.group for rule in policy.rules} == {Groups.AGE_65_PLUS, Groups.UNDER_20}
    assert policy.max_list_age_s == 60
    assert policy.offline_unknown is Behaviour.ALLOW_FLAGGED
    assert policy.stale_list is Behaviour.ALLOW_FLAGGED
    for later in (now, now + dt.timedelta(hours=3), now + dt.timedelta(hours=10)):
        assert not demo.restricted_may_board(later)
        # ...and the validator's decision agrees with the demo's own reading.
        assert not may_travel_now(Groups.AGE_65_PLUS, policy, later)
        assert not may_travel_now(Groups.UNDER_20, policy, later)
        assert may_travel_now(Groups.NONE, policy, later)
    inside = now + dt.timedelta(hours=12)
    assert may_travel_now(Groups.AGE_65_PLUS, policy, inside.replace(minute=30))
    assert demo.restricted_may_board(inside.replace(minute=30))


def test_a_policy_outside_the_protocols_limits_is_refused() -> None:
    with pytest.raises(ValueError, match="max_list_age_s"):
        DemoPolicy(window_start_min=0, window_end_min=60, max_list_age_s=30)
    with pytest.raises(ValueError, match="window"):
        DemoPolicy(window_start_min=60, window_end_min=60)


@pytest.mark.parametrize("text", ['quote " and \\ backslash', "line\nbreak", "ışİğ", ""])
def test_strings_survive_toml(text: str) -> None:
    assert tomllib.loads(f"x = {toml_value(text)}")["x"] == text


def test_tables_hold_numbers_booleans_paths_and_lists() -> None:
    text = toml_table("t", {"n": 3, "f": 0.5, "b": True, "p": Path("/a b"), "l": ["x", 1]})
    assert tomllib.loads(text) == {"t": {"n": 3, "f": 0.5, "b": True, "p": "/a b", "l": ["x", 1]}}
    with pytest.raises(TypeError):
        toml_value(object())


def test_the_depots_file_with_the_demos_sections(tmp_path: Path) -> None:
    config = tmp_path / "depot.toml"
    assert depot_main(["init-config", str(config), "--data-dir", str(tmp_path / "data")]) == 0
    policy = tmp_path / "policy.toml"
    tuning = DepotTuning(refresh_interval_s=2.0, recheck_after_s=2, breaker_cooldown_s=1.5)
    with config.open("a", encoding="utf-8") as out:
        out.write(
            depot_sections(
                ministry_base_url="http://127.0.0.1:9/services/g2g/saglik/hes/",
                policy_file=policy,
                tuning=tuning,
            )
        )
    loaded = load_depot_config(config, env={"HESGATE_MINISTRY__PASSWORD": "pw"})
    assert loaded.ministry is not None
    assert loaded.ministry.username == MINISTRY_USER
    assert loaded.ministry.breaker_cooldown_s == 1.5
    assert loaded.policy.file == policy
    assert loaded.refresh.interval_s == 2.0
    assert loaded.refresh.recheck_after_s == 2
    assert loaded.risklist.snapshot_interval_s == 0
    assert loaded.check.budget_ms == 250


def test_a_validators_file_from_what_provisioning_printed(tmp_path: Path) -> None:
    provisioned = {
        "device": {"id": "bus-9", "secret": "ab" * 32, "list_key": "cd" * 32},
        "depot": {
            "url": "http://127.0.0.1:1111",
            "list_key_id": "depot-1",
            "list_public_key": "-----BEGIN PUBLIC KEY-----\nMCow\n-----END PUBLIC KEY-----\n",
        },
    }
    text = validator_toml(
        provisioned,
        depot_url="http://127.0.0.1:2222",
        scanner_port="/dev/pts/9",
        screen_port=8099,
        data_dir=tmp_path / "data",
        vehicle="34 HES 009",
        route="500T",
        trip="500T-001",
        tuning=ValidatorTuning(sync_interval_s=3.0),
    )
    path = tmp_path / "validator.toml"
    path.write_text(text, encoding="utf-8")
    config = load_config(ValidatorConfig, path, env={})
    assert config.device.id == "bus-9"
    assert config.depot.url == "http://127.0.0.1:2222"  # through the proxy, not as provisioned
    assert config.depot.list_public_key == provisioned["depot"]["list_public_key"]
    assert config.scanner.port == "/dev/pts/9"
    assert config.screen.port == 8099
    assert config.storage.data_dir == tmp_path / "data"
    assert config.vehicle.route == "500T"
    assert config.sync.delta_interval_s == config.sync.heartbeat_interval_s == 3.0
