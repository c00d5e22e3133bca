"""Day partitions of ``taps``: created ahead of time, dropped whole when past retention."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Final

import structlog

from depot_sync.db import Conn

log = structlog.get_logger("hesgate.depot.partitions")

_NAME: Final = re.compile(r"taps_([0-9]{8})")
_DURATION: Final = re.compile(r"([0-9]+)\s*(d|day|days|w|week|weeks)")


class BadDuration(ValueError):
    """Not a duration in whole days (``30d``, ``4w``)."""


def parse_days(text: str) -> int:
    """``30d`` or ``4w`` as a number of days."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise BadDuration(f"{text!r} is not a duration in days: write e.g. 30d or 4w")
    number, unit = int(match[1]), match[2]
    return number * (7 if unit.startswith("w") else 1)


async def ensure_partitions(conn: Conn, today: dt.date, *, back: int = 1, ahead: int = 7) -> int:
    """Create the partitions from ``back`` days before ``today`` to ``ahead`` days after it.

    Returns how many were created. Rows already in the default partition for
    those days are moved in.
    """
    created = 0
    for offset in range(-back, ahead + 1):
        day = today + dt.timedelta(days=offset)
        if await conn.fetchval("SELECT ensure_tap_partition($1)", day):
            created += 1
            log.info("tap partition created", day=day.isoformat())
    return created


async def partition_days(conn: Conn) -> list[dt.date]:
    """The days that have their own partition, oldest first."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'taps'::regclass"
    )
    days = []
    for row in rows:
        match = _NAME.fullmatch(row["relname"])
        if match:
            days.append(dt.datetime.strptime(match[1], "%Y%m%d").replace(tzinfo=dt.UTC).date())
    return sorted(days)


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What a purge removed (or would remove)."""

    cutoff: dt.date
    days: tuple[dt.date, ...]
    partition_rows: int
    default_rows: int


async def purge(conn: Conn, cutoff: dt.date, *, dry_run: bool = False) -> PurgeResult:
    """Drop every day before ``cutoff``: whole partitions, and such rows of the default one."""
    days = tuple(d for d in await partition_days(conn) if d < cutoff)
    async with conn.transaction():
        rows = 0
        for day in days:
            name = f"taps_{day:%Y%m%d}"
            rows += await conn.fetchval(f'SELECT count(*) FROM "{name}"')  # noqa: S608
            if not dry_run:
                await conn.execute(f'DROP TABLE "{name}"')
        if dry_run:
            default_rows = await conn.fetchval(
                "SELECT count(*) FROM taps_default WHERE time_ms < day_start_ms($1)", cutoff
            )
        else:
            status = await conn.execute(
                "DELETE FROM taps_default WHERE time_ms < day_start_ms($1)", cutoff
            )
            default_rows = int(status.rsplit(" ", 1)[1])
    if not dry_run:
        log.info(
            "tap records purged",
            cutoff=cutoff.isoformat(),
            partitions=len(days),
            rows=rows + default_rows,
        )
    return PurgeResult(cutoff, days, rows, default_rows)
