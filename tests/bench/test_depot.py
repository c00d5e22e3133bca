"""The depot the bench measures runs with a depot's defaults, not tuned for the bench."""

from __future__ import annotations

from pathlib import Path

from bench.depot import config_text
from depot_sync.config import IngestSection, ServerSection, load


def test_the_bench_depot_config_keeps_every_performance_setting_at_its_default(
    tmp_path: Path,
) -> None:
    (tmp_path / "depot.toml").write_text(
        config_text(
            directory=tmp_path,
            port=18470,
            url="http://127.0.0.1:18470",
            dsn="postgresql://bench@127.0.0.1:5432/hesgate_bench",
            field_key=bytes(32),
            signing_key=tmp_path / "list-signing.pem",
        ),
        encoding="utf-8",
    )
    config = load(tmp_path / "depot.toml", env={})
    defaults = ServerSection()
    assert config.server.port == 18470
    assert config.server.access_log is defaults.access_log is True
    assert config.server.gc_thresholds == defaults.gc_thresholds
    assert config.server.gc_freeze is defaults.gc_freeze is True
    assert config.server.max_body_bytes == defaults.max_body_bytes
    assert config.ingest == IngestSection()
    assert config.risklist.snapshot_interval_s == 0
