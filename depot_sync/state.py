"""What the depot's request handlers share, reached through typed application keys."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aiohttp import web

from depot_sync.auth import PgDeviceSecrets
from depot_sync.config import DepotConfig
from depot_sync.crypto import FieldCipher
from depot_sync.jobs.runner import JobRunner
from depot_sync.metrics import DepotMetrics
from depot_sync.ministry.check import OnlineCheck
from depot_sync.operations.fleet import LastSeen
from depot_sync.operations.policy import PolicySource
from depot_sync.risklist.watch import ListWatch
from protocol.listsign import ListSigner
from protocol.ministry import MinistryClient
from protocol.signing import NonceStore


@dataclass(frozen=True, slots=True)
class Depot:
    """The depot's long-lived parts."""

    config: DepotConfig
    pool: asyncpg.Pool
    cipher: FieldCipher
    signer: ListSigner
    policy: PolicySource
    ministry: MinistryClient | None
    metrics: DepotMetrics
    secrets: PgDeviceSecrets
    nonces: NonceStore
    last_seen: LastSeen
    checker: OnlineCheck
    ingest_slots: asyncio.Semaphore
    #: The list's head and newest snapshot, kept in memory while changes are reported.
    watch: ListWatch

    @property
    def list_key(self) -> bytes:
        """The credential-key HMAC key."""
        return self.config.keys.list_key_bytes

    @property
    def snapshot_dir(self) -> Path:
        """Where snapshot files are."""
        return self.config.snapshot_dir


DEPOT = web.AppKey("depot", Depot)
JOBS = web.AppKey("jobs", JobRunner)
