"""A 100k list: the validator's snapshot plus deltas answers exactly as the depot's own list."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import asyncpg
import pytest

from depot_sync.crypto import credential_context
from depot_sync.risklist.changes import list_head
from depot_sync.risklist.credentials import NOT_FOUND, MinistryFacts, MinistryState, record_facts
from depot_sync.risklist.registrations import import_registrations
from protocol.risk import HealthStatus
from tests.depot_sync.helpers import code_of, listed
from tests.validator.bus import bench, config_from, on_the_bus
from tests.validator.depot import LiveDepot, live_depot
from tests.validator.ptys import FakeCable, eventually

SIZE = 100_000
FAST = """
[sync]
delta_interval_s = 0.3
heartbeat_interval_s = 0.3
backoff_initial_s = 0.05
backoff_max_s = 0.3
"""


def card_of(n: int) -> str:
    return f"04{n:012X}"


async def register(depot: LiveDepot, numbers: range, *, cards_every: int = 10) -> None:
    """Registrations for ``code_of(n)``: cards for those ``cards_every`` apart, ages mixed."""
    rows = ["card_uid,hes_code,tckn,age_group"]
    groups = ("adult", "65+", "under_20", "adult")
    for n in numbers:
        card = card_of(n) if n % cards_every == 0 else ""
        rows.append(f"{card},{code_of(n)},{(n % 500) * 2:03d},{groups[n % 4]}")
    async with depot.pool.acquire() as conn:
        report = await import_registrations(
            conn, depot.depot.cipher, depot.list_key, "\n".join(rows) + "\n"
        )
    assert not report.rejected


async def listed_codes(depot: LiveDepot, numbers: range, facts: MinistryFacts) -> None:
    """``code_of(n)`` on the list at once, as many online checks would leave them (in bulk)."""
    keys = [depot.key(code_of(n)) for n in numbers]
    cipher = depot.depot.cipher
    sealed = [
        cipher.seal_text(code_of(n), context=credential_context(k))
        for n, k in zip(numbers, keys, strict=True)
    ]
    await depot.pool.execute(
        "INSERT INTO credentials (key, kind, value_enc, ministry_state, status, expires_at,"
        " expiry_day, tckn_last3, source, last_checked_at)"
        " SELECT k, 1, v, 'found', $3, $4, $5, $6, 'online_check', now()"
        " FROM unnest($1::bytea[], $2::bytea[]) AS u(k, v)",
        keys,
        sealed,
        int(facts.status or 0),
        facts.expires_at,
        facts.expiry_day,
        facts.tckn_last3,
    )


async def answer(depot: LiveDepot, numbers: range, facts: MinistryFacts) -> None:
    async with depot.pool.acquire() as conn:
        await record_facts(
            conn, [(depot.key(code_of(n)), facts) for n in numbers], dt.datetime.now(dt.UTC)
        )


def found(status: HealthStatus, days: int, last3: str | None = None) -> MinistryFacts:
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
    return MinistryFacts(MinistryState.FOUND, status, expires, last3)


@pytest.mark.slow
async def test_snapshot_plus_deltas_match_the_depots_list(
    pool: asyncpg.Pool, tmp_path: Path, cable: FakeCable
) -> None:
    async with live_depot(pool, tmp_path) as depot:
        await listed_codes(depot, range(SIZE), found(HealthStatus.RISKLESS, 30, "246"))
        await register(depot, range(0, SIZE, 10))  # cards for every tenth code
        await depot.publish()
        assert (await depot.latest()).entries == SIZE + SIZE // 10

        # Changes the snapshot does not have, before the validator starts...
        await answer(depot, range(0, 3000), found(HealthStatus.RISKY, 30, "246"))
        await answer(depot, range(3000, 3500), NOT_FOUND)
        await register(depot, range(SIZE, SIZE + 2000), cards_every=2)
        await answer(depot, range(SIZE, SIZE + 2000), found(HealthStatus.RISKLESS, 5))

        printed = await depot.provision("bus-0001")
        text = on_the_bus(
            printed, scanner_port=cable.path, screen_port=0, data_dir=tmp_path / "v", extra=FAST
        )
        async with bench(config_from(text, tmp_path / "v.toml"), cable) as b:
            head = (await list_head(pool)).version
            await eventually(lambda: b.validator.risk_list.version == head, within=60)
            assert b.validator.risk_list.snapshot_version < head  # deltas on top of it

            # ...and while it runs: flips back, removals, expiries, new cards.
            await answer(depot, range(0, 1000), found(HealthStatus.RISKLESS, 30, "246"))
            await answer(depot, range(50_000, 56_000), NOT_FOUND)
            await answer(depot, range(60_000, 61_000), found(HealthStatus.RISKY, 1))
            await register(depot, range(SIZE + 2000, SIZE + 2100), cards_every=1)
            await answer(depot, range(SIZE + 2000, SIZE + 2100), found(HealthStatus.RISKY, 9))
            head = (await list_head(pool)).version
            await eventually(lambda: b.validator.risk_list.version == head, within=60)

            truth = await listed(pool)
            lookup = b.validator.risk_list.lookup
            assert len(truth) > SIZE
            assert {key: lookup(key) for key in truth} == truth
            gone = [depot.key(code_of(n)) for n in (*range(3000, 3500), *range(50_000, 56_000))]
            assert all(lookup(key) is None for key in gone)
            never = [depot.key(code_of(n)) for n in range(SIZE + 5000, SIZE + 6000)]
            assert all(lookup(key) is None for key in never)
