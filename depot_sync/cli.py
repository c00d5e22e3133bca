"""``hes-depot``: the depot's commands (docs/depot.md describes each).

Exit status: 0 done, 1 the command was refused or failed (the message says
why), 2 the command line or the configuration is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import secrets
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import asyncpg

from depot_sync.app import SetupError, load_signer, serve
from depot_sync.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    FIELD_KEY_SIZE,
    DepotConfig,
    config_path,
    load,
)
from depot_sync.crypto import FieldCipher
from depot_sync.db.embedded import EmbeddedPostgresError
from depot_sync.db.migrations import MigrationError, migrate, pending
from depot_sync.db.pool import DatabaseUnavailable, open_database
from depot_sync.jobs.partitions import BadDuration, ensure_partitions, parse_days, purge
from depot_sync.metrics import DepotMetrics
from depot_sync.ministry.refresh import Refresher
from depot_sync.operations.devices import (
    DeviceError,
    provision_device,
    revoke_device,
    validator_config,
)
from depot_sync.operations.operators import (
    OperatorError,
    Role,
    add_token,
    create_operator,
    revoke_tokens,
)
from depot_sync.operations.policy import PolicyError
from depot_sync.risklist.registrations import RegistrationFileError, import_registrations, read_file
from depot_sync.risklist.snapshots import SnapshotRefused, build_snapshot
from protocol.credentials import LIST_KEY_SIZE
from protocol.listsign import ListSigner
from protocol.ministry import MinistryClient, MinistryError
from runtime.config import ConfigError
from runtime.logs import configure_logging

#: Failures a command reports in one line (exit status 1) rather than a traceback.
REPORTED: Final = (
    SetupError,
    MigrationError,
    DatabaseUnavailable,
    EmbeddedPostgresError,
    DeviceError,
    OperatorError,
    RegistrationFileError,
    BadDuration,
    PolicyError,
    SnapshotRefused,
    MinistryError,
    asyncpg.PostgresError,
    OSError,
)

Command = Callable[[DepotConfig, argparse.Namespace], Coroutine[Any, Any, int]]


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")


@asynccontextmanager
async def _database(
    config: DepotConfig, *, migrate_first: bool = True
) -> AsyncIterator[asyncpg.Pool]:
    async with open_database(config.database, config.embedded_pg_dir) as db:
        if migrate_first:
            async with db.pool.acquire() as conn:
                if config.database.migrate_on_start:
                    await migrate(conn, config.database.migrations_dir)
                elif todo := await pending(conn, config.database.migrations_dir):
                    raise SetupError(f"{todo[0].label} is not applied: run hes-depot migrate")
        yield db.pool


def _cipher(config: DepotConfig) -> FieldCipher:
    keys = config.keys
    return FieldCipher(keys.field_key_bytes, keys.previous_field_key_bytes)


async def cmd_migrate(config: DepotConfig, args: argparse.Namespace) -> int:
    """Apply pending migrations and create the coming days' partitions."""
    async with _database(config, migrate_first=False) as pool, pool.acquire() as conn:
        done = await migrate(conn, config.database.migrations_dir)
        await ensure_partitions(
            conn, dt.datetime.now(dt.UTC).date(), ahead=config.retention.partitions_ahead_days
        )
    for migration in done:
        _out(f"applied {migration.label}")
    if not done:
        _out("the database is up to date")
    return 0


async def cmd_serve(config: DepotConfig, args: argparse.Namespace) -> int:
    """Run the server."""
    await serve(config)
    return 0


async def cmd_build_snapshot(config: DepotConfig, args: argparse.Namespace) -> int:
    """Build and publish a snapshot now."""
    signer = load_signer(config.keys)
    async with _database(config) as pool:
        published = await build_snapshot(
            pool,
            signer,
            config.snapshot_dir,
            keep=config.risklist.keep_snapshots,
            max_shrink=config.risklist.max_shrink_fraction,
            force=args.force,
        )
    if published is None:
        _out("the newest snapshot is already current")
    else:
        _out(
            f"published list version {published.list_version}: {published.entries} entries, "
            f"{published.size_bytes} bytes, {published.path}"
        )
    return 0


async def cmd_refresh(config: DepotConfig, args: argparse.Namespace) -> int:
    """Re-check due HES codes with the Ministry once."""
    if config.ministry is None:
        raise SetupError("no [ministry] section is configured")
    async with _database(config) as pool, MinistryClient(config.ministry) as client:
        refresher = Refresher(pool, _cipher(config), client, config.refresh, DepotMetrics())
        report = await refresher.run_once(max_codes=args.max)
    _out(
        f"asked {report.asked}: {report.changed} changed, {report.unchanged} unchanged, "
        f"{report.failed} without an answer; age groups changed {report.groups_changed}"
    )
    return 0


async def cmd_import(config: DepotConfig, args: argparse.Namespace) -> int:
    """Import card registrations from a CSV file."""
    text = read_file(args.file)
    async with _database(config) as pool, pool.acquire() as conn:
        report = await import_registrations(conn, _cipher(config), config.keys.list_key_bytes, text)
    lines = "\n".join(report.lines()) + "\n"
    if args.report is not None:
        args.report.write_text(lines, encoding="utf-8")
        _out(next(report.lines()))
        _out(f"report written to {args.report}")
    else:
        _out(lines)
    return 0


async def cmd_provision(config: DepotConfig, args: argparse.Namespace) -> int:
    """Enrol a validator and print its configuration."""
    signer = load_signer(config.keys)
    async with _database(config) as pool, pool.acquire() as conn:
        secret = await provision_device(
            conn, _cipher(config), args.device, vehicle=args.vehicle, rotate=args.rotate
        )
    text = validator_config(
        device_id=args.device,
        secret=secret,
        list_key=config.keys.list_key_bytes,
        depot_url=config.server.public_url,
        list_key_id=signer.key_id,
        list_public_pem=signer.public_pem().decode("ascii"),
    )
    if args.output is not None:
        _write_private(args.output, text)
        _out(f"validator configuration written to {args.output}")
    else:
        _out(text)
    return 0


async def cmd_revoke(config: DepotConfig, args: argparse.Namespace) -> int:
    """Revoke a validator."""
    async with _database(config) as pool, pool.acquire() as conn:
        changed = await revoke_device(conn, args.device)
    _out(
        f"device {args.device} revoked" if changed else f"device {args.device} was already revoked"
    )
    return 0


async def cmd_create_operator(config: DepotConfig, args: argparse.Namespace) -> int:
    """Create an operator and print their token once."""
    async with _database(config) as pool, pool.acquire() as conn:
        token = await create_operator(conn, args.name, Role(args.role))
    _out(f"operator {args.name} ({args.role}) created. Their token, shown only now:\n{token}")
    return 0


async def cmd_add_token(config: DepotConfig, args: argparse.Namespace) -> int:
    """Issue another token to an operator."""
    async with _database(config) as pool, pool.acquire() as conn:
        token = await add_token(conn, args.name)
    _out(f"new token for {args.name}, shown only now:\n{token}")
    return 0


async def cmd_revoke_tokens(config: DepotConfig, args: argparse.Namespace) -> int:
    """Revoke every token of an operator."""
    async with _database(config) as pool, pool.acquire() as conn:
        count = await revoke_tokens(conn, args.name)
    _out(f"{count} tokens of {args.name} revoked")
    return 0


async def cmd_purge(config: DepotConfig, args: argparse.Namespace) -> int:
    """Drop whole days of tap records older than the given age."""
    days = parse_days(args.older_than)
    cutoff = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days)
    async with _database(config) as pool, pool.acquire() as conn:
        result = await purge(conn, cutoff, dry_run=args.dry_run)
    verb = "would drop" if args.dry_run else "dropped"
    listed = ", ".join(d.isoformat() for d in result.days) or "no day partitions"
    _out(
        f"{verb} taps before {cutoff.isoformat()}: {listed} "
        f"({result.partition_rows} rows) and {result.default_rows} rows of other days"
    )
    return 0


async def cmd_partitions(config: DepotConfig, args: argparse.Namespace) -> int:
    """Create the coming days' tap partitions now."""
    async with _database(config) as pool, pool.acquire() as conn:
        created = await ensure_partitions(conn, dt.datetime.now(dt.UTC).date(), ahead=args.ahead)
    _out(f"{created} partitions created")
    return 0


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def init_config(args: argparse.Namespace) -> int:
    """Write a new configuration file with fresh keys, and its signing key beside it."""
    path: Path = args.path
    key_path = path.with_name(path.stem + "-list-signing.pem")
    for target in (path, key_path):
        if target.exists():
            _err(f"hes-depot init-config: {target} exists; not overwriting it")
            return 1
    signer = ListSigner.generate(args.key_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    signer.save(key_path)
    data_dir = args.data_dir.resolve()
    text = (
        "# hes-depot configuration (see docs/depot.md). Holds secrets: keep it private.\n"
        f'data_dir = "{data_dir}"\n\n'
        "[server]\n"
        'host = "127.0.0.1"\n'
        "port = 8470\n"
        f'public_url = "{args.public_url}"\n\n'
        "[database]\n"
        '# dsn = "postgresql://hesgate@db.example/hesgate"  # unset: embedded PostgreSQL\n\n'
        "[keys]\n"
        f'field_key = "{secrets.token_hex(FIELD_KEY_SIZE)}"\n'
        f'list_key = "{secrets.token_hex(LIST_KEY_SIZE)}"\n'
        f'signing_key_file = "{key_path.resolve()}"\n'
        f'signing_key_id = "{args.key_id}"\n\n'
        "# [ministry]\n"
        '# base_url = "https://hesservis.turkiye.gov.tr/services/g2g/test/saglik/hes/"\n'
        '# username = "ORG-TEST"\n'
        '# password = "..."  # or HESGATE_MINISTRY__PASSWORD in the environment\n'
    )
    _write_private(path, text)
    _out(f"wrote {path} and {key_path}")
    return 0


COMMANDS: Final[Mapping[str, Command]] = MappingProxyType(
    {
        "migrate": cmd_migrate,
        "serve": cmd_serve,
        "build-snapshot": cmd_build_snapshot,
        "refresh": cmd_refresh,
        "import-registrations": cmd_import,
        "provision-device": cmd_provision,
        "revoke-device": cmd_revoke,
        "create-operator": cmd_create_operator,
        "add-token": cmd_add_token,
        "revoke-tokens": cmd_revoke_tokens,
        "purge": cmd_purge,
        "partitions": cmd_partitions,
    }
)


def parser() -> argparse.ArgumentParser:
    """The command line."""
    top = argparse.ArgumentParser(prog="hes-depot", description="The hesgate depot server.")
    top.add_argument(
        "--config",
        type=Path,
        help=f"configuration file (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG_PATH})",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("migrate", help="apply pending database migrations")
    sub.add_parser("serve", help="run the HTTP server and the background jobs")
    p = sub.add_parser("build-snapshot", help="publish a risk-list snapshot now")
    p.add_argument("--force", action="store_true", help="publish even an empty or shrunk list")
    p = sub.add_parser("refresh", help="re-check due HES codes with the Ministry once")
    p.add_argument("--max", type=int, default=None, help="ask about at most this many codes")
    p = sub.add_parser("import-registrations", help="import card registrations from CSV")
    p.add_argument("file", type=Path)
    p.add_argument("--report", type=Path, help="write the report here instead of stdout")
    p = sub.add_parser("provision-device", help="enrol a validator, print its configuration")
    p.add_argument("device", help="the device id, e.g. bus-0042-front")
    p.add_argument("--vehicle", help="the vehicle it is fitted to")
    p.add_argument("--rotate", action="store_true", help="issue a new secret to an enrolled device")
    p.add_argument("--output", type=Path, help="write the configuration to this new file (0600)")
    p = sub.add_parser("revoke-device", help="refuse a validator's requests from now on")
    p.add_argument("device")
    p = sub.add_parser("create-operator", help="create an operator, print their token once")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=[r.value for r in Role])
    p = sub.add_parser("add-token", help="issue another token to an operator")
    p.add_argument("name")
    p = sub.add_parser("revoke-tokens", help="revoke every token of an operator")
    p.add_argument("name")
    p = sub.add_parser("purge", help="drop whole days of tap records")
    p.add_argument("--older-than", required=True, help="e.g. 30d or 4w")
    p.add_argument("--dry-run", action="store_true", help="only say what would be dropped")
    p = sub.add_parser("partitions", help="create the coming days' tap partitions")
    p.add_argument("--ahead", type=int, default=7)
    p = sub.add_parser("init-config", help="write a new configuration file with fresh keys")
    p.add_argument("path", type=Path)
    p.add_argument("--data-dir", type=Path, default=Path("/var/lib/hes-depot"))
    p.add_argument("--public-url", default="http://127.0.0.1:8470")
    p.add_argument("--key-id", default="depot-1")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    args = parser().parse_args(argv)
    if args.command == "init-config":
        return init_config(args)
    try:
        config = load(config_path(args.config))
    except ConfigError as err:
        _err(f"hes-depot: configuration: {err}")
        return 2
    configure_logging(config.log.level, json=config.log.json, quiet_loggers=("asyncio", "pgserver"))
    try:
        return asyncio.run(COMMANDS[args.command](config, args))
    except REPORTED as err:
        _err(f"hes-depot {args.command}: {err}")
        return 1
    except KeyboardInterrupt:
        return 130
