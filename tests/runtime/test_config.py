from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from runtime.config import ConfigError, hex_bytes, load_config


@dataclass(frozen=True, slots=True)
class Database:
    dsn: str | None = None
    pool_size: int = 10


@dataclass(frozen=True, slots=True)
class Server:
    host: str = "127.0.0.1"
    port: int = 8080
    mode: Literal["live", "test"] = "test"
    allowed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Settings:
    device_id: str
    database: Database = field(default_factory=Database)
    server: Server = field(default_factory=Server)
    data_dir: Path = Path("var")

    def __post_init__(self) -> None:
        if self.server.port <= 0:
            raise ValueError("server.port must be positive")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_file_values_and_defaults(tmp_path: Path) -> None:
    cfg = load_config(Settings, write(tmp_path, 'device_id = "bus-1"\n[database]\npool_size = 4\n'))
    assert cfg.device_id == "bus-1"
    assert cfg.database == Database(dsn=None, pool_size=4)
    assert cfg.server.port == 8080


def test_environment_overrides_file(tmp_path: Path) -> None:
    env = {
        "HESGATE_DATABASE__POOL_SIZE": "20",
        "HESGATE_SERVER__ALLOWED": "a, b",
        "HESGATE_TEST_DSN": "not configuration",
    }
    cfg = load_config(Settings, write(tmp_path, 'device_id = "x"\n'), env=env)
    assert cfg.database.pool_size == 20
    assert cfg.server.allowed == ("a", "b")


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        (
            'device_id = "x"\n[database]\npool_size = "ten"\n',
            {},
            "database.pool_size: expected an integer",
        ),
        ('device_id = "x"\n[databse]\n', {}, "databse: unknown key"),
        ("", {}, "device_id: required key is missing"),
        (
            'device_id = "x"\n[server]\nmode = "prod"\n',
            {},
            "server.mode: expected one of 'live', 'test'",
        ),
        ('device_id = "x"\n', {"HESGATE_SERVER__PORT": "eighty"}, "HESGATE_SERVER__PORT"),
        ('device_id = "x"\n', {"HESGATE_SERVER__PORTT": "1"}, "server.portt: unknown key"),
        ('device_id = "x"\n[server]\nport = -1\n', {}, "server.port must be positive"),
        ("device_id = \n", {}, "is not valid TOML"),
    ],
)
def test_bad_configuration_names_the_key(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_config(Settings, write(tmp_path, text), env=env)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Settings, tmp_path / "absent.toml")


@dataclass(frozen=True, slots=True)
class Keys:
    token: str

    def __post_init__(self) -> None:
        hex_bytes("keys.token", self.token, 4)


@dataclass(frozen=True, slots=True)
class WithKeys:
    keys: Keys


def test_hex_bytes_reads_a_key_of_the_right_size() -> None:
    assert hex_bytes("k", "  00A1ff7e\n", 4) == b"\x00\xa1\xff\x7e"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("00a1ff", r"k: expected 4 bytes \(8 hex digits\), got 3"),
        ("00a1ff7e00", r"k: expected 4 bytes \(8 hex digits\), got 5"),
        ("00a1ff7g", "k: expected 8 hexadecimal digits"),
        ("", r"k: expected 4 bytes \(8 hex digits\), got 0"),
    ],
)
def test_hex_bytes_names_the_key_and_the_size(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        hex_bytes("k", text, 4)


def test_a_bad_hex_key_is_a_config_error_of_its_section(tmp_path: Path) -> None:
    path = write(tmp_path, '[keys]\ntoken = "0011"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(WithKeys, path)
    assert caught.value.key == "keys"
    assert "keys.token: expected 4 bytes (8 hex digits), got 2" in str(caught.value)
    assert load_config(WithKeys, path, env={"HESGATE_KEYS__TOKEN": "0011aabb"}).keys == Keys(
        "0011aabb"
    )
