"""Re-checking known HES codes with the Ministry, oldest answer first, under a rate limit.

Codes never checked come first, then those whose last answer is older than
``refresh.recheck_after_s``. Each round asks the bulk endpoint about up to
``batch_size`` codes and stores the answers; only real changes reach the
list (see :func:`depot_sync.risklist.credentials.record_facts`). A code the Ministry
gave no answer for keeps its old answer and its old check time, so it is
asked again next round. The pace never passes ``max_codes_per_s``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import structlog

from depot_sync.config import RefreshSection
from depot_sync.crypto import FieldCipher
from depot_sync.metrics import DepotMetrics
from depot_sync.risklist.credentials import (
    EXPIRED,
    NOT_FOUND,
    MinistryFacts,
    facts_of,
    record_facts,
    refresh_groups,
    stored_code,
)
from protocol.ministry import MinistryClient
from protocol.risk import ISTANBUL

log = structlog.get_logger("hesgate.depot.refresh")


@dataclass(slots=True)
class RefreshReport:
    """What a refresh did."""

    asked: int = 0
    changed: int = 0
    unchanged: int = 0
    failed: int = 0
    groups_changed: int = 0


class Refresher:
    """Runs refresh rounds; remembers the year it last recomputed age groups for."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        cipher: FieldCipher,
        client: MinistryClient,
        settings: RefreshSection,
        metrics: DepotMetrics,
        *,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._pool = pool
        self._cipher = cipher
        self._client = client
        self._settings = settings
        self._metrics = metrics
        self._now = now
        self._sleep = sleep
        self._groups_year: int | None = None

    async def _due(
        self, limit: int, before: dt.datetime, skip: list[bytes]
    ) -> list[asyncpg.Record]:
        return await self._pool.fetch(
            "SELECT key, value_enc FROM credentials "
            "WHERE kind = 1 AND (last_checked_at IS NULL OR last_checked_at < $1) "
            "AND NOT key = ANY($3::bytea[]) "
            "ORDER BY last_checked_at NULLS FIRST, key LIMIT $2",
            before,
            limit,
            skip,
        )

    async def run_once(self, *, max_codes: int | None = None) -> RefreshReport:
        """Ask about every due code (or at most ``max_codes``); returns what happened."""
        report = RefreshReport()
        year = self._now().astimezone(ISTANBUL).year
        if self._groups_year != year:
            async with self._pool.acquire() as conn:
                report.groups_changed = await refresh_groups(conn, year)
            self._groups_year = year
        before = self._now() - dt.timedelta(seconds=self._settings.recheck_after_s)
        # Codes that failed this run are not asked again until the next run.
        skipped: list[bytes] = []
        loop = asyncio.get_running_loop()
        while max_codes is None or report.asked < max_codes:
            size = self._settings.batch_size
            if max_codes is not None:
                size = min(size, max_codes - report.asked)
            rows = await self._due(size, before, skipped)
            if not rows:
                break
            started = loop.time()
            codes: dict[str, bytes] = {}
            for row in rows:
                code = stored_code(self._cipher, row["key"], row["value_enc"])
                if code is None:
                    skipped.append(row["key"])
                    continue
                codes[code] = row["key"]
            if codes and not await self._ask(codes, report, skipped):
                log.warning("the Ministry answered nothing in this batch; round stopped")
                break
            # Keep the pace: this batch may not end before len/rate seconds have passed.
            wait = len(rows) / self._settings.max_codes_per_s - (loop.time() - started)
            if wait > 0:
                await self._sleep(wait)
        if report.asked:
            log.info(
                "refresh round done",
                asked=report.asked,
                changed=report.changed,
                unchanged=report.unchanged,
                failed=report.failed,
            )
        return report

    async def _ask(
        self, codes: dict[str, bytes], report: RefreshReport, skipped: list[bytes]
    ) -> bool:
        """Ask about ``codes`` and store the answers; False if there was no answer at all."""
        outcome = await self._client.check_many(codes)
        facts: list[tuple[bytes, MinistryFacts]] = []
        for code, result in outcome.results.items():
            facts.append((codes[code], facts_of(result)))
        facts += [(codes[code], NOT_FOUND) for code in outcome.not_found]
        facts += [(codes[code], EXPIRED) for code in outcome.expired]
        for code in outcome.failed:
            skipped.append(codes[code])
        async with self._pool.acquire() as conn:
            changed = await record_facts(conn, facts, self._now())
        report.asked += len(codes)
        report.changed += changed
        report.unchanged += len(facts) - changed
        report.failed += len(outcome.failed)
        self._metrics.refreshed.labels("changed").inc(changed)
        self._metrics.refreshed.labels("unchanged").inc(len(facts) - changed)
        self._metrics.refreshed.labels("failed").inc(len(outcome.failed))
        self._metrics.ministry_calls.labels("bulk", "answered").inc(len(facts))
        self._metrics.ministry_calls.labels("bulk", "failed").inc(len(outcome.failed))
        return bool(facts)
