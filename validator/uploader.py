"""Sending tap records to the depot: in order, in batches, until every one is acknowledged.

A batch goes when ``batch_size`` records wait or the oldest has waited
``batch_age_s``. Each batch is the oldest unacknowledged records, in sequence
order, so after an outage of any length the backlog drains oldest first.
The depot answers the highest sequence it holds contiguously (the ack); the
queue forgets nothing above it, and deletes records at or below it only once
the local retention has passed. Resending is harmless: the depot stores a
record once however often it arrives. Failures back off with jitter, honour
``Retry-After``, and never give up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

import structlog

from protocol.messages import PROTOCOL_VERSION, TapAck, TapBatch
from validator.config import UploadSection
from validator.depot_client import DepotClient, DepotError
from validator.periodic import Backoff, sleep_or_wake
from validator.queue import TapQueue

log = structlog.get_logger(__name__)

#: Acked records past their retention are purged at least this often while idle.
PURGE_INTERVAL_S: Final = 600.0


class NoProgress(DepotError):
    """The depot answered but its ack did not move: it is missing records below the batch."""


class Uploader:
    """Drains the tap queue to the depot."""

    def __init__(
        self,
        *,
        queue: TapQueue,
        client: DepotClient,
        device_id: str,
        config: UploadSection,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queue = queue
        self._client = client
        self._device = device_id
        self._config = config
        self._clock = clock
        self._tapped = asyncio.Event()
        #: Set to cut a backoff short (the depot is reachable again).
        self.resume = asyncio.Event()
        self.problem: str | None = None
        self._log = log.bind(device=device_id)

    def tapped(self) -> None:
        """A tap was stored: a batch may be due."""
        self._tapped.set()

    def _due_in(self) -> float | None:
        """Seconds until a batch is due (0: now), or ``None`` with nothing to send."""
        stats = self._queue.stats()
        if stats.backlog - stats.pending_in_memory <= 0:
            return None
        if stats.backlog >= self._config.batch_size:
            return 0.0
        if stats.oldest_unsent_ms is None:
            return 0.0
        waited = self._clock() - stats.oldest_unsent_ms / 1000
        return max(self._config.batch_age_s - waited, 0.0)

    async def run(self) -> None:
        """Send batches as they fall due, forever."""
        backoff = Backoff(self._config.backoff_initial_s, self._config.backoff_max_s)
        last_purge = self._clock()
        while True:
            due = self._due_in()
            if due is None or due > 0:
                if self._clock() - last_purge >= PURGE_INTERVAL_S:
                    self._queue.purge()
                    last_purge = self._clock()
                wait = PURGE_INTERVAL_S if due is None else min(due, PURGE_INTERVAL_S)
                await sleep_or_wake(self._tapped, wait)
                continue
            try:
                await self.send_batch()
            except DepotError as err:
                self.problem = str(err)
                delay = backoff.next_delay(err.retry_after)
                self._log.warning(
                    "tap_upload_failed",
                    error=str(err),
                    retry_in_s=round(delay, 1),
                    failures=backoff.failures,
                    backlog=self._queue.stats().backlog,
                )
                await sleep_or_wake(self.resume, delay)
                continue
            self.problem = None
            backoff.reset()
            last_purge = self._clock()
            # Yield between batches so a draining backlog never starves taps.
            await asyncio.sleep(0)

    async def send_batch(self) -> int:
        """Send the oldest unacknowledged records; return the depot's ack."""
        records = self._queue.unsent(self._config.batch_size)
        if not records:
            return self._queue.acked
        before = self._queue.acked
        batch = TapBatch(v=PROTOCOL_VERSION, device=self._device, taps=records)
        answer = await self._client.call("POST", "/v1/taps", batch, TapAck)
        self._queue.mark_acked(answer.ack)
        self._log.info(
            "tap_batch_acked",
            first_seq=records[0].seq,
            last_seq=records[-1].seq,
            ack=answer.ack,
            stored=answer.stored,
            duplicates=answer.duplicates,
        )
        if answer.ack <= before:
            raise NoProgress(
                f"sent {records[0].seq}..{records[-1].seq}, the depot's ack stays at {answer.ack}"
            )
        self._queue.purge()
        return answer.ack
