from __future__ import annotations

from pathlib import Path

import pytest

from runtime.config import ConfigError, load_config
from validator.cli import main
from validator.config import ValidatorConfig

EXAMPLE = Path(__file__).parents[2] / "deploy" / "validator" / "validator.example.toml"


def test_example_config_loads_with_documented_defaults() -> None:
    config = load_config(ValidatorConfig, EXAMPLE, env={})
    assert config.device.id == "bus-34hes001-front"
    assert config.scanner.port == "/dev/hes-scanner"
    assert config.scanner.terminator_bytes == b"\r"
    assert config.depot.online_budget_ms == 300
    assert config.depot.online_reserve_ms == 10
    assert config.screen.idle_s == 20.0
    assert config.storage.data_dir == Path("/var/lib/hes-validator")
    assert len(config.device.secret_bytes) == 32
    assert len(config.device.list_key_bytes) == 32


def test_environment_overrides_the_file() -> None:
    env = {
        "HESGATE_SCANNER__PORT": "/dev/ttyUSB3",
        "HESGATE_SCANNER__TERMINATOR": "CRLF",
        "HESGATE_DEPOT__ONLINE_BUDGET_MS": "500",
    }
    config = load_config(ValidatorConfig, EXAMPLE, env=env)
    assert config.scanner.port == "/dev/ttyUSB3"
    assert config.scanner.terminator_bytes == b"\r\n"
    assert config.depot.online_budget_ms == 500


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"HESGATE_DEVICE__SECRET": "abc"}, "device"),
        ({"HESGATE_DEVICE__LIST_KEY": "00" * 31}, "device"),
        ({"HESGATE_DEPOT__URL": "ftp://x"}, "depot"),
        ({"HESGATE_DEPOT__ONLINE_BUDGET_MS": "fast"}, "depot.online_budget_ms"),
        ({"HESGATE_DEPOT__ONLINE_RESERVE_MS": "151"}, "depot"),
        ({"HESGATE_DEPOT__ONLINE_RESERVE_MS": "-1"}, "depot"),
        ({"HESGATE_SCANNER__MAX_FRAME_BYTES": "4"}, "scanner"),
        ({"HESGATE_UPLOAD__BATCH_SIZE": "6000"}, "upload"),
        ({"HESGATE_LOG__LEVEL": "loud"}, "log.level"),
    ],
)
def test_mistakes_name_the_key(override: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(ValidatorConfig, EXAMPLE, env=override)
    assert caught.value.key == key


def test_scanner_port_is_required(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace('port = "/dev/hes-scanner"', "")
    path = tmp_path / "v.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"scanner\.port: required key is missing"):
        load_config(ValidatorConfig, path, env={})


def test_check_config_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "bus-34hes001-front" in out
    assert "/dev/hes-scanner" in out


def test_bad_config_exits_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "v.toml"
    path.write_text("[device]\nid = 1\n", encoding="utf-8")
    assert main(["run", "--config", str(path)]) == 2
    assert "configuration error" in capsys.readouterr().err


def test_a_public_key_that_is_not_one_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    start = text.index("-----BEGIN PUBLIC KEY-----\n") + len("-----BEGIN PUBLIC KEY-----\n")
    path = tmp_path / "v.toml"
    path.write_text(text[:start] + "AAAA" + text[start:], encoding="utf-8")
    assert main(["check-config", "--config", str(path)]) == 2
    assert "depot.list_public_key" in capsys.readouterr().err
