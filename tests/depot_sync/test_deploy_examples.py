"""The example files in deploy/depot/ stay loadable as the code changes."""

from __future__ import annotations

import os
from pathlib import Path

from depot_sync.config import DepotConfig
from depot_sync.operations.policy import load_policy
from protocol.messages import Behaviour
from runtime.config import load_config

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "depot"


def test_example_configuration_loads(tmp_path: Path) -> None:
    text = (EXAMPLES / "depot.example.toml").read_text(encoding="utf-8")
    text = text.replace('"CHANGE-ME-64-hex-digits"', f'"{os.urandom(32).hex()}"', 2)
    path = tmp_path / "depot.toml"
    path.write_text(text, encoding="utf-8")
    config = load_config(DepotConfig, path)
    assert config.retention.tap_days == 30
    # nginx logs the requests; the depot need not log them again.
    assert config.server.access_log is False
    assert config.server.gc_thresholds == (100_000, 50, 100)
    assert "access_log /var/log/nginx/" in (EXAMPLES / "nginx-hes-depot.conf").read_text()
    assert config.ministry is not None
    assert config.ministry.environment == "test"
    assert config.policy.file == Path("/etc/hesgate/policy.toml")


def test_example_policy_loads() -> None:
    policy = load_policy(EXAMPLES / "policy.example.toml", issued_ms=0)
    assert policy.stale_list is Behaviour.DENY
    assert [(w.start_min, w.end_min) for r in policy.rules for w in r.windows] == [
        (600, 780),
        (780, 960),
    ]
