from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from runtime.config import ConfigError, build
from runtime.logs import LogSection, configure_logging

pytestmark = pytest.mark.usefixtures("restore_logging")


def test_json_lines_with_bound_context_and_no_secrets() -> None:
    out = io.StringIO()
    configure_logging("info", json=True, stream=out)
    log = structlog.get_logger("hesgate.test").bind(device="bus-7")
    log.info("batch stored", batch=3, password="hunter2")
    logging.getLogger("aiohttp.access").info("GET /healthz 200")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["event"] == "batch stored"
    assert lines[0]["device"] == "bus-7"
    assert lines[0]["level"] == "info"
    assert "hunter2" not in out.getvalue()
    assert lines[1]["event"] == "GET /healthz 200"


def test_level_filters_debug() -> None:
    out = io.StringIO()
    configure_logging("warning", json=True, stream=out)
    structlog.get_logger("x").info("hidden")
    structlog.get_logger("x").warning("shown")
    assert "hidden" not in out.getvalue()
    assert "shown" in out.getvalue()


def test_log_section_reads_level_and_format() -> None:
    assert build(LogSection, {}) == LogSection(level="info", json=None)
    assert build(LogSection, {"level": "debug", "json": False}) == LogSection("debug", json=False)
    with pytest.raises(ConfigError, match="loud"):
        build(LogSection, {"level": "loud"})
