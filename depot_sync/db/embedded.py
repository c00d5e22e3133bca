"""An embedded PostgreSQL (pgserver) in the depot's data directory, for when no DSN is set."""

from __future__ import annotations

import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import structlog

log = structlog.get_logger("hesgate.depot.db")


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL could not be started."""


def _pgserver() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (services, containers).
        warnings.simplefilter("ignore")
        import pgserver  # noqa: PLC0415

    return pgserver


def with_database(dsn: str, database: str) -> str:
    """``dsn`` pointing at ``database`` instead of the one it names."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


@contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or join) the PostgreSQL in ``data_dir`` and yield its DSN; stop it on exit.

    The server listens only on a Unix socket. Blocking: call it from a thread
    when a loop is running.
    """
    pgserver = _pgserver()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    log.info("starting embedded PostgreSQL (no database.dsn configured)", data_dir=str(data_dir))
    try:
        server = pgserver.get_server(data_dir, cleanup_mode="stop")
    except (OSError, RuntimeError, AssertionError, subprocess.SubprocessError) as err:
        raise EmbeddedPostgresError(
            f"the embedded PostgreSQL in {data_dir} did not start: {err}"
        ) from err
    try:
        yield str(server.get_uri())
    finally:
        log.info("stopping embedded PostgreSQL", data_dir=str(data_dir))
        server.cleanup()
