from __future__ import annotations

import os
import tomllib
from pathlib import Path

import asyncpg
import pytest

from depot_sync.cli import main
from protocol.listsign import ListSigner
from tests.pg import PgCluster, run_sync, unique_name
from validator.config import DepotSection, DeviceSection

# main() configures process-wide logging: put it back for the next test.
pytestmark = pytest.mark.usefixtures("restore_logging")


def write_config(tmp_path: Path, dsn: str, extra: str = "") -> Path:
    key_file = tmp_path / "signing.pem"
    if not key_file.exists():
        ListSigner.generate("depot-test").save(key_file)
    path = tmp_path / "depot.toml"
    path.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        '[server]\npublic_url = "https://depot.example.org"\n'
        f'[database]\ndsn = "{dsn}"\npool_min = 1\npool_max = 2\n'
        f'[keys]\nfield_key = "{os.urandom(32).hex()}"\nlist_key = "{os.urandom(32).hex()}"\n'
        f'signing_key_file = "{key_file}"\nsigning_key_id = "depot-test"\n'
        '[log]\nlevel = "warning"\n' + extra,
        encoding="utf-8",
    )
    return path


@pytest.fixture
def config(tmp_path: Path, db_dsn: str) -> Path:
    return write_config(tmp_path, db_dsn)


def run(config: Path, *args: str) -> int:
    return main(["--config", str(config), *args])


def fetchval(dsn: str, query: str) -> object:
    async def go() -> object:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(query)
        finally:
            await conn.close()

    return run_sync(go())


def test_migrate_from_empty(
    tmp_path: Path, postgres: PgCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    name = unique_name("cli")
    dsn = postgres.create_database_sync(name)
    try:
        config = write_config(tmp_path, dsn, extra="")
        assert run(config, "migrate") == 0
        assert "applied 001_initial.sql" in capsys.readouterr().out
        assert run(config, "migrate") == 0
        assert "up to date" in capsys.readouterr().out
        # Yesterday, today and the next seven days, besides the default partition.
        days = fetchval(
            dsn,
            "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'taps'::regclass AND c.relname <> 'taps_default'",
        )
        assert days == 9
    finally:
        postgres.drop_database_sync(name)


def test_provision_prints_a_validator_configuration(
    config: Path, db_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "provision-device", "bus-0042-front", "--vehicle", "34 ABC 42") == 0
    printed = tomllib.loads(capsys.readouterr().out)
    device = DeviceSection(**printed["device"])
    depot = DepotSection(**printed["depot"])
    assert device.id == "bus-0042-front"
    assert len(device.secret_bytes) == 32
    depot_keys = tomllib.loads(config.read_text())["keys"]
    assert device.list_key == depot_keys["list_key"]
    assert depot.url == "https://depot.example.org"
    assert depot.list_key_id == "depot-test"
    signer = ListSigner.load(Path(depot_keys["signing_key_file"]), "depot-test")
    assert depot.list_public_key.strip() == signer.public_pem().decode().strip()
    stored = fetchval(db_dsn, "SELECT secret_enc FROM devices")
    assert isinstance(stored, bytes)
    assert device.secret_bytes not in stored

    assert run(config, "provision-device", "bus-0042-front") == 1
    assert "already enrolled" in capsys.readouterr().err
    out = config.parent / "bus.toml"
    assert run(config, "provision-device", "bus-0042-front", "--rotate", "--output", str(out)) == 0
    rotated = tomllib.loads(out.read_text())
    assert rotated["device"]["secret"] != printed["device"]["secret"]
    assert out.stat().st_mode & 0o777 == 0o600
    assert run(config, "provision-device", "not a valid id") == 1


def test_revoke_device(config: Path, db_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config, "provision-device", "bus-1") == 0
    assert run(config, "revoke-device", "bus-1") == 0
    assert fetchval(db_dsn, "SELECT status FROM devices") == "revoked"
    assert run(config, "revoke-device", "bus-1") == 0
    assert "already revoked" in capsys.readouterr().out
    assert run(config, "revoke-device", "bus-404") == 1


def test_operators_and_tokens(
    config: Path, db_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "create-operator", "ayse", "--role", "auditor") == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert token.startswith("hgo_")
    assert fetchval(db_dsn, "SELECT role FROM operators") == "auditor"
    stored = fetchval(db_dsn, "SELECT token_hash FROM operator_tokens")
    assert isinstance(stored, bytes)
    assert token.encode() not in stored
    assert run(config, "create-operator", "ayse", "--role", "ops") == 1
    assert run(config, "add-token", "ayse") == 0
    assert run(config, "revoke-tokens", "ayse") == 0
    assert "2 tokens" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        run(config, "create-operator", "mehmet", "--role", "janitor")


def test_import_registrations_with_a_report(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = config.parent / "reg.csv"
    csv.write_text(
        "card_uid,hes_code,tckn,birth_year\n04A224B2C61E80,R7G6915415,246,1950\nzz,bad,1,1\n",
        encoding="utf-8",
    )
    report = config.parent / "report.txt"
    assert run(config, "import-registrations", str(csv), "--report", str(report)) == 0
    lines = report.read_text().splitlines()
    assert lines[0].startswith("2 rows: 1 accepted, 1 rejected")
    assert lines[1].startswith("line 3: card_uid:")
    assert run(config, "import-registrations", str(config.parent / "missing.csv")) == 1
    assert "does not exist" in capsys.readouterr().err


def test_build_snapshot_guard_and_purge(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config, "build-snapshot") == 1
    assert "empty" in capsys.readouterr().err
    assert run(config, "build-snapshot", "--force") == 0
    assert "published list version 0" in capsys.readouterr().out
    assert run(config, "purge", "--older-than", "30d", "--dry-run") == 0
    assert "would drop" in capsys.readouterr().out
    assert run(config, "purge", "--older-than", "soon") == 1


def test_bad_configuration_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "depot.toml"
    path.write_text('[keys]\nfield_key = "00"\n', encoding="utf-8")
    assert main(["--config", str(path), "migrate"]) == 2
    err = capsys.readouterr().err
    assert "keys" in err


def test_init_config_writes_a_working_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "etc" / "depot.toml"
    assert main(["init-config", str(path), "--data-dir", str(tmp_path / "var")]) == 0
    assert path.stat().st_mode & 0o777 == 0o600
    data = tomllib.loads(path.read_text())
    assert len(bytes.fromhex(data["keys"]["field_key"])) == 32
    ListSigner.load(Path(data["keys"]["signing_key_file"]), data["keys"]["signing_key_id"])
    assert main(["init-config", str(path)]) == 1
