"""The heartbeat: how this validator is doing, told to the depot; what the depot has, heard back.

Sent every ``heartbeat_interval_s``. The answer says which list and policy
versions the depot has: a list at the depot's version is marked current (its
age restarts), a newer one wakes the list sync, a different policy version
wakes the policy refresh. The clock skew is read from the answer's ``Date``
header by the depot client, as for every other answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from protocol.messages import PROTOCOL_VERSION, Heartbeat, HeartbeatAnswer
from validator.config import SyncSection
from validator.depot_client import DepotClient, DepotError
from validator.periodic import Backoff
from validator.policy import PolicyStore
from validator.queue import TapQueue
from validator.risklist import RiskList

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Wakers:
    """Who to wake when the depot has news."""

    list_sync: Callable[[], None]
    policy: Callable[[], None]


class HeartbeatAgent:
    """Sends heartbeats and acts on their answers."""

    def __init__(
        self,
        *,
        client: DepotClient,
        device_id: str,
        software: str,
        queue: TapQueue,
        risk_list: RiskList,
        policy: PolicyStore,
        online_failures: Callable[[], int],
        wakers: Wakers,
        config: SyncSection,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._device = device_id
        self._software = software[:64]
        self._queue = queue
        self._list = risk_list
        self._policy = policy
        self._online_failures = online_failures
        self._wakers = wakers
        self._config = config
        self._clock = clock
        self.last_answer: HeartbeatAnswer | None = None

    def message(self) -> Heartbeat:
        """The heartbeat as of now."""
        now_ms = int(self._clock() * 1000)
        stats = self._queue.stats()
        age = self._list.age_s(now_ms)
        return Heartbeat(
            v=PROTOCOL_VERSION,
            device=self._device,
            time_ms=now_ms,
            software=self._software,
            last_seq=stats.last_seq,
            backlog=stats.backlog,
            oldest_unsent_ms=stats.oldest_unsent_ms,
            list_version=self._list.version,
            list_age_s=None if age is None else int(age),
            policy_version=self._policy.current.version,
            online_failures=min(self._online_failures(), 2**32 - 1),
        )

    async def beat(self) -> HeartbeatAnswer:
        """Send one heartbeat and act on the answer."""
        answer = await self._client.call("POST", "/v1/heartbeat", self.message(), HeartbeatAnswer)
        self.last_answer = answer
        if answer.list_version > self._list.version:
            self._wakers.list_sync()
        elif self._list.has_list and answer.list_version == self._list.version:
            await self._list.mark_fresh()
        if answer.policy_version != self._policy.current.version:
            self._wakers.policy()
        return answer

    async def run(self) -> None:
        """Beat on the interval, sooner after a failure (with backoff); forever."""
        backoff = Backoff(self._config.backoff_initial_s, self._config.heartbeat_interval_s)
        while True:
            try:
                await self.beat()
            except DepotError as err:
                log.debug("heartbeat_failed", error=str(err))
                await asyncio.sleep(backoff.next_delay(err.retry_after))
                continue
            backoff.reset()
            await asyncio.sleep(self._config.heartbeat_interval_s)
