from __future__ import annotations

import dataclasses
import os

import asyncpg
from structlog.testing import capture_logs

from depot_sync.config import RefreshSection
from depot_sync.crypto import FieldCipher, credential_context
from depot_sync.metrics import DepotMetrics
from depot_sync.ministry.refresh import Refresher
from depot_sync.risklist.credentials import hes_key
from depot_sync.risklist.registrations import import_registrations
from protocol.ministry import MinistryClient
from protocol.ministry.simulator import Faults
from protocol.risk import HealthStatus
from tests.depot_sync.ministry.sim import person, simulated_ministry

LIST_KEY = os.urandom(32)
CODES = [f"CODE{n:06d}" for n in range(6)]


async def register(pool: asyncpg.Pool, field: FieldCipher, codes: list[str]) -> None:
    lines = ["card_uid,hes_code,tckn,age_group"]
    lines += [f",{code},246,adult" for code in codes]
    lines.append(f"04A224B2C61E80,{codes[0]},246,adult")
    async with pool.acquire() as conn:
        report = await import_registrations(conn, field, LIST_KEY, "\n".join(lines) + "\n")
    assert report.rejected == []


def refresher(
    pool: asyncpg.Pool, field: FieldCipher, client: MinistryClient, **settings: float
) -> tuple[Refresher, list[float]]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    section = dataclasses.replace(RefreshSection(recheck_after_s=0), **settings)  # type: ignore[arg-type]
    return Refresher(pool, field, client, section, DepotMetrics(), sleep=sleep), waits


async def list_changes(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM list_changes"))


async def test_refresh_writes_only_changes(pool: asyncpg.Pool) -> None:
    field = FieldCipher(os.urandom(32))
    people = [person(code) for code in CODES[:5]]  # CODES[5] is unknown to the Ministry
    await register(pool, field, CODES)
    async with simulated_ministry(people) as (sim, client):
        job, _ = refresher(pool, field, client)
        first = await job.run_once()
        assert (first.asked, first.changed, first.failed) == (6, 6, 0)
        # Five codes and the card of the first are on the list; the unknown code is not.
        assert await list_changes(pool) == 6
        state = await pool.fetchval(
            "SELECT ministry_state FROM credentials WHERE key = $1", hes_key(LIST_KEY, CODES[5])
        )
        assert state == "not_found"

        before = await pool.fetch(
            "SELECT key, updated_at, last_checked_at FROM credentials ORDER BY key"
        )
        second = await job.run_once()
        assert (second.asked, second.changed, second.unchanged) == (6, 0, 6)
        assert await list_changes(pool) == 6
        after = await pool.fetch(
            "SELECT key, updated_at, last_checked_at FROM credentials ORDER BY key"
        )
        assert [r["updated_at"] for r in before] == [r["updated_at"] for r in after]
        code_keys = {hes_key(LIST_KEY, c) for c in CODES}
        assert all(
            a["last_checked_at"] > b["last_checked_at"]
            for b, a in zip(before, after, strict=True)
            if a["key"] in code_keys
        )

        sim.population.put(dataclasses.replace(people[0], status=HealthStatus.RISKY))
        third = await job.run_once()
        assert (third.changed, third.unchanged) == (1, 5)
        # The code and the card linked to it.
        rows = await pool.fetch(
            "SELECT key, status FROM list_changes ORDER BY version DESC LIMIT 2"
        )
        assert {r["status"] for r in rows} == {HealthStatus.RISKY}


async def test_no_answer_keeps_the_old_one(pool: asyncpg.Pool) -> None:
    field = FieldCipher(os.urandom(32))
    await register(pool, field, CODES[:3])
    async with simulated_ministry([person(c) for c in CODES[:3]]) as (sim, client):
        job, _ = refresher(pool, field, client)
        await job.run_once()
        checked = await pool.fetch(
            "SELECT key, last_checked_at, status FROM credentials ORDER BY key"
        )
        sim.faults.set(Faults(unavailable_rate=1.0))
        report = await job.run_once()
        assert (report.failed, report.changed) == (3, 0)
        assert (
            await pool.fetch("SELECT key, last_checked_at, status FROM credentials ORDER BY key")
            == checked
        )


async def test_pace_keeps_to_the_rate(pool: asyncpg.Pool) -> None:
    field = FieldCipher(os.urandom(32))
    await register(pool, field, CODES)
    async with simulated_ministry([person(c) for c in CODES]) as (_, client):
        job, waits = refresher(pool, field, client, batch_size=2, max_codes_per_s=10.0)
        report = await job.run_once()
    assert report.asked == 6
    assert len(waits) == 3  # one pause per batch of two
    assert all(0 < w <= 0.2 for w in waits)


async def test_max_codes_limits_a_round(pool: asyncpg.Pool) -> None:
    field = FieldCipher(os.urandom(32))
    await register(pool, field, CODES)
    async with simulated_ministry([person(c) for c in CODES]) as (_, client):
        job, _ = refresher(pool, field, client, batch_size=4)
        assert (await job.run_once(max_codes=3)).asked == 3
        unchecked = await pool.fetchval(
            "SELECT count(*) FROM credentials WHERE kind = 1 AND last_checked_at IS NULL"
        )
        assert unchecked == 3


async def test_a_code_that_does_not_decrypt_is_left_out(pool: asyncpg.Pool) -> None:
    field = FieldCipher(os.urandom(32))
    await register(pool, field, CODES[:3])
    # Sealed under a field key this depot no longer has (rotated away without keeping it).
    lost = hes_key(LIST_KEY, CODES[1])
    await pool.execute(
        "UPDATE credentials SET value_enc = $2 WHERE key = $1",
        lost,
        FieldCipher(os.urandom(32)).seal_text(CODES[1], context=credential_context(lost)),
    )
    async with simulated_ministry([person(code) for code in CODES[:3]]) as (_sim, client):
        job, _ = refresher(pool, field, client)
        with capture_logs() as logs:
            report = await job.run_once()
    assert (report.asked, report.changed, report.failed) == (2, 2, 0)
    row = await pool.fetchrow(
        "SELECT ministry_state, last_checked_at FROM credentials WHERE key = $1", lost
    )
    assert row is not None
    assert (row["ministry_state"], row["last_checked_at"]) == ("unchecked", None)
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [e["key"] for e in errors] == [lost.hex()]
