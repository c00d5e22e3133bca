"""Putting the depot together: its parts, its jobs, the aiohttp application, the server."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import asyncpg
import structlog
from aiohttp import log as aiohttp_log
from aiohttp import web

from depot_sync.api import operator as operator_api
from depot_sync.api import validator as validator_api
from depot_sync.api.common import error_middleware
from depot_sync.auth import PgDeviceSecrets, PgNonceStore, purge_nonces
from depot_sync.collector import tuned_collector
from depot_sync.config import DepotConfig, KeysSection, ServerSection
from depot_sync.crypto import FieldCipher
from depot_sync.db.migrations import migrate, pending
from depot_sync.db.pool import open_database
from depot_sync.jobs.partitions import ensure_partitions, purge
from depot_sync.jobs.runner import Job, JobRunner
from depot_sync.metrics import DepotMetrics
from depot_sync.ministry.check import OnlineCheck
from depot_sync.ministry.refresh import Refresher
from depot_sync.operations.fleet import LastSeen
from depot_sync.operations.policy import PolicyError, PolicySource
from depot_sync.risklist.snapshots import SnapshotRefused, build_snapshot
from depot_sync.risklist.watch import HEAD, SNAPSHOT, ListWatch
from depot_sync.state import DEPOT, JOBS, Depot
from protocol.listsign import KeyFormatError, ListSigner
from protocol.ministry import MinistryClient

log = structlog.get_logger("hesgate.depot")

#: Advisory locks that keep each job to one depot process at a time.
SNAPSHOT_JOB_LOCK = 4851010
REFRESH_JOB_LOCK = 4851011
PARTITION_JOB_LOCK = 4851012
#: How often the small jobs run.
HOUSEKEEPING_S = 10.0
PARTITIONS_S = 3600.0


class SetupError(RuntimeError):
    """The depot cannot start as configured; the message says what to fix."""


def load_signer(keys: KeysSection) -> ListSigner:
    """The list-signing key from ``keys.signing_key_file``."""
    try:
        return ListSigner.load(keys.signing_key_file, keys.signing_key_id)
    except OSError as err:
        raise SetupError(
            f"keys.signing_key_file: cannot read {keys.signing_key_file}: {err.strerror}"
        ) from err
    except KeyFormatError as err:
        raise SetupError(f"keys.signing_key_file: {err}") from err


def build_depot(
    config: DepotConfig,
    pool: asyncpg.Pool,
    ministry: MinistryClient | None,
    *,
    signer: ListSigner | None = None,
) -> Depot:
    """The depot's parts around an open pool (and a Ministry client, if configured)."""
    keys = config.keys
    cipher = FieldCipher(keys.field_key_bytes, keys.previous_field_key_bytes)
    signer = signer or load_signer(keys)
    try:
        policy = PolicySource(config.policy.file, signer)
    except PolicyError as err:
        raise SetupError(f"policy.file: {err}") from err
    metrics = DepotMetrics()
    return Depot(
        config=config,
        pool=pool,
        cipher=cipher,
        signer=signer,
        policy=policy,
        ministry=ministry,
        metrics=metrics,
        secrets=PgDeviceSecrets(pool, cipher, cache_s=config.auth.secret_cache_s),
        nonces=PgNonceStore(pool),
        last_seen=LastSeen(),
        checker=OnlineCheck(
            pool,
            cipher,
            keys.list_key_bytes,
            ministry=ministry,
            settings=config.check,
            metrics=metrics,
        ),
        ingest_slots=asyncio.Semaphore(config.ingest.max_concurrent_batches),
        watch=ListWatch(pool, config.snapshot_dir, max_age_s=config.risklist.cache_max_age_s),
    )


async def publish_snapshot(depot: Depot, *, force: bool = False) -> None:
    """Build and publish a snapshot if the list changed (the job's body)."""
    risklist = depot.config.risklist
    try:
        published = await build_snapshot(
            depot.pool,
            depot.signer,
            depot.snapshot_dir,
            keep=risklist.keep_snapshots,
            max_shrink=risklist.max_shrink_fraction,
            force=force,
        )
    except SnapshotRefused:
        depot.metrics.snapshots_refused.inc()
        raise
    if published is not None:
        # Other processes learn it from PostgreSQL's notification; this one need not wait.
        depot.watch.forget(SNAPSHOT)
        depot.watch.forget(HEAD)


async def maintain_partitions(depot: Depot) -> None:
    """Create partitions ahead, and drop days past retention (the job's body)."""
    retention = depot.config.retention
    today = dt.datetime.now(dt.UTC).date()
    async with depot.pool.acquire() as conn:
        await ensure_partitions(conn, today, ahead=retention.partitions_ahead_days)
        if retention.tap_days:
            await purge(conn, today - dt.timedelta(days=retention.tap_days))
        if retention.export_log_days:
            await conn.execute(
                "DELETE FROM export_log WHERE started_at < now() - make_interval(days => $1)",
                retention.export_log_days,
            )


async def housekeeping(depot: Depot) -> None:
    """Write last-seen times and forget expired nonces (the job's body)."""
    await depot.last_seen.flush(depot.pool)
    await purge_nonces(depot.pool)


def depot_jobs(depot: Depot) -> list[Job]:
    """The jobs ``serve`` runs."""
    config = depot.config
    jobs = [
        Job("housekeeping", HOUSEKEEPING_S, lambda: housekeeping(depot)),
        Job("partitions", PARTITIONS_S, lambda: maintain_partitions(depot), PARTITION_JOB_LOCK),
    ]
    if config.risklist.snapshot_interval_s:
        jobs.append(
            Job(
                "snapshot",
                config.risklist.snapshot_interval_s,
                lambda: publish_snapshot(depot),
                SNAPSHOT_JOB_LOCK,
            )
        )
    if depot.ministry is not None and config.refresh.enabled:
        refresher = Refresher(
            depot.pool, depot.cipher, depot.ministry, config.refresh, depot.metrics
        )
        jobs.append(Job("refresh", config.refresh.interval_s, refresher.run_once, REFRESH_JOB_LOCK))
    return jobs


def create_app(depot: Depot, *, run_jobs: bool = False) -> web.Application:
    """The depot's aiohttp application (with ``run_jobs``, its background jobs too)."""
    app = web.Application(
        client_max_size=depot.config.server.max_body_bytes, middlewares=[error_middleware]
    )
    app[DEPOT] = depot
    validator_api.add_routes(app)
    operator_api.add_routes(app)

    async def watch(app: web.Application) -> AsyncIterator[None]:
        depot.watch.start()
        yield
        await depot.watch.stop()

    app.cleanup_ctx.append(watch)
    if run_jobs:
        runner = JobRunner(depot.pool, depot_jobs(depot))
        app[JOBS] = runner

        async def jobs(app: web.Application) -> AsyncIterator[None]:
            runner.start()
            yield
            await runner.stop()

        app.cleanup_ctx.append(jobs)

    async def flush_last_seen(app: web.Application) -> None:
        await depot.last_seen.flush(depot.pool)

    app.on_shutdown.append(flush_last_seen)
    return app


@asynccontextmanager
async def running_depot(config: DepotConfig) -> AsyncIterator[Depot]:
    """The depot's parts for a ``serve``: database (migrated), partitions, Ministry client."""
    migrations = config.database.migrations_dir
    async with (
        open_database(config.database, config.embedded_pg_dir) as db,
        AsyncExitStack() as stack,
    ):
        async with db.pool.acquire() as conn:
            if config.database.migrate_on_start:
                await migrate(conn, migrations)
            elif todo := await pending(conn, migrations):
                raise SetupError(
                    f"{len(todo)} migrations are not applied ({todo[0].label} first): "
                    "run hes-depot migrate"
                )
            await ensure_partitions(
                conn, dt.datetime.now(dt.UTC).date(), ahead=config.retention.partitions_ahead_days
            )
        ministry = None
        if config.ministry is not None:
            ministry = await stack.enter_async_context(MinistryClient(config.ministry))
        else:
            log.warning("no [ministry] configured: online checks answer UNAVAILABLE, no refresh")
        yield build_depot(config, db.pool, ministry)


def app_runner(app: web.Application, server: ServerSection) -> web.AppRunner:
    """The runner ``serve`` serves ``app`` with, access log on or off as ``server`` says."""
    return web.AppRunner(
        app,
        handler_cancellation=True,
        shutdown_timeout=server.shutdown_timeout_s,
        # None turns the access log off; aiohttp's logger goes through structlog's formatter.
        access_log=aiohttp_log.access_logger if server.access_log else None,
    )


async def serve(config: DepotConfig, *, ready: asyncio.Event | None = None) -> None:
    """Run the depot until SIGINT or SIGTERM."""
    async with running_depot(config) as depot:
        runner = app_runner(create_app(depot, run_jobs=True), config.server)
        await runner.setup()
        try:
            site = web.TCPSite(runner, config.server.host, config.server.port)
            await site.start()
            log.info(
                "depot serving",
                address=[f"{a[0]}:{a[1]}" for a in runner.addresses],
                public_url=config.server.public_url,
            )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            with tuned_collector(config.server):
                if ready is not None:
                    ready.set()
                await stop.wait()
            log.info("depot stopping")
        finally:
            await runner.cleanup()
