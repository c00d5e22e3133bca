"""``hes-validator``: run the validator, or ask a running one how it is doing.

hes-validator run --config validator.toml
hes-validator status --config validator.toml      # or --url http://127.0.0.1:8080
hes-validator status --json --config validator.toml
hes-validator check-config --config validator.toml
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import structlog

from runtime.config import ConfigError, load_config
from runtime.logs import configure_logging
from validator.config import ValidatorConfig, list_verifier

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_UNREACHABLE = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hes-validator", description="The on-bus HES-gated boarding validator."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the validator")
    run.add_argument("--config", type=Path, required=True, help="the validator's TOML file")
    status = sub.add_parser("status", help="show how a running validator is doing")
    where = status.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", type=Path, help="read the screen address from this file")
    where.add_argument("--url", help="the screen's address, e.g. http://127.0.0.1:8080")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    check = sub.add_parser("check-config", help="check a configuration file and say what it sets")
    check.add_argument("--config", type=Path, required=True)
    return parser


def load(path: Path) -> ValidatorConfig:
    """The configuration from ``path`` and ``HESGATE_*`` environment overrides."""
    return load_config(ValidatorConfig, path, env=os.environ)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``hes-validator``."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "status" and args.url:
            return print_status(args.url, as_json=args.json)
        config = load(args.config)
        if args.command == "run":
            configure_logging(config.log.level, json=config.log.json)
            asyncio.run(_run(config))
            return EXIT_OK
        if args.command == "status":
            host = config.screen.host
            if host in ("0.0.0.0", "::", ""):  # noqa: S104 - the wildcard is read, not bound
                host = "127.0.0.1"
            return print_status(f"http://{host}:{config.screen.port}", as_json=args.json)
        return _check_config(config, sys.stdout)
    except ConfigError as err:
        sys.stderr.write(f"hes-validator: configuration error: {err}\n")
        return EXIT_CONFIG


async def _run(config: ValidatorConfig) -> None:
    from validator.app import Validator  # noqa: PLC0415 - status must not need the whole app

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Validator(config):
        await stop.wait()
        log.info("validator_stopping")


def fetch_status(url: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """``GET /api/status`` of the validator whose screen is at ``url``."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http URL: {url}")
    with urllib.request.urlopen(url.rstrip("/") + "/api/status", timeout=timeout_s) as response:  # noqa: S310 - scheme checked above
        data: dict[str, Any] = json.loads(response.read())
    return data


def print_status(url: str, *, as_json: bool, out: TextIO | None = None) -> int:
    """Print a running validator's status for a person (or as JSON)."""
    stream = out if out is not None else sys.stdout
    try:
        status = fetch_status(url)
    except (OSError, ValueError, urllib.error.URLError) as err:
        sys.stderr.write(f"hes-validator: no validator answers at {url}: {err}\n")
        return EXIT_UNREACHABLE
    if as_json:
        json.dump(status, stream, indent=2, ensure_ascii=False)
        stream.write("\n")
    else:
        stream.write(describe(status))
    return EXIT_OK


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def describe(status: dict[str, Any]) -> str:
    """The status as a few lines for a person."""
    now_ms = status["time_ms"]
    lines = [f"Validator {status['device']} ({status['software']})"]
    contact = status["last_contact_ms"]
    link = "online" if status["online"] else "OFFLINE"
    if contact is not None:
        link += f", last answer {_ago((now_ms - contact) / 1000)} ago"
    if status["depot_error"]:
        link += f" - {status['depot_error']}"
    lines.append(f"  depot      {link}")
    skew = status["clock_skew_s"]
    if skew is not None:
        flag = "  <-- PAST THE BOUND" if status["clock_skew_flagged"] else ""
        lines.append(f"  clock      {skew:+.1f} s from the depot's{flag}")
    age = status["list_age_s"]
    stale = "  <-- STALE" if status["list_stale"] else ""
    lines.append(
        f"  risk list  version {status['list_version']} (snapshot {status['snapshot_version']}),"
        f" {'no list' if age is None else _ago(age) + ' old'}{stale}"
    )
    if status["list_problem"]:
        lines.append(f"             {status['list_problem']}")
    lines.append(f"  policy     version {status['policy_version']}")
    lines.append(
        f"  queue      {status['backlog']} waiting to upload (last seq {status['last_seq']},"
        f" acked {status['acked']}, oldest {_when(status['oldest_unsent_ms'])})"
    )
    if status["upload_error"]:
        lines.append(f"  uploads    failing: {status['upload_error']}")
    if status["storage_error"]:
        lines.append(
            f"  STORAGE    {status['storage_error']}"
            f" ({status['pending_in_memory']} taps held in memory)"
        )
    scanner = "connected" if status["scanner_connected"] else f"MISSING - {status['scanner_error']}"
    lines.append(f"  scanner    {scanner}")
    last = status["last_decision"]
    if last is None:
        lines.append("  last tap   none since start")
    else:
        seq = "not recorded" if last["seq"] is None else f"#{last['seq']}"
        lines.append(
            f"  last tap   {seq} {last['reason']} {last['colour']} by {last['decided_by']},"
            f" {_when(last['time_ms'])}, {last['latency_us'] / 1000:.1f} ms"
        )
    lines.extend(f"  warning    {w['en']}" for w in status["warnings"])
    return "\n".join(lines) + "\n"


def _check_config(config: ValidatorConfig, out: TextIO) -> int:
    list_verifier(config)
    out.write(
        f"device {config.device.id}: depot {config.depot.url}, list key id"
        f" {config.depot.list_key_id}\n"
        f"scanner {config.scanner.port} at {config.scanner.baudrate} baud,"
        f" terminator {config.scanner.terminator_bytes!r}\n"
        f"screen http://{config.screen.host}:{config.screen.port}/,"
        f" data in {config.storage.data_dir}\n"
    )
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
