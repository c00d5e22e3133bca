"""The boarding policy: fetched signed from the depot, checked, kept on disk, swapped whole.

Until a signed policy has ever been accepted, :data:`validator.decide.DEFAULT_POLICY`
applies: it refuses what cannot be checked. The signed envelope is stored as
received (``policy.signed``) and checked again at every start, so a policy
file altered on the box is refused like one altered on the wire.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog

from protocol.codec import MessageError, decode, encode
from protocol.listsign import ListVerifier, SignatureInvalid, unseal
from protocol.messages import Policy, Signed
from runtime.files import write_atomically
from validator.config import SyncSection
from validator.decide import DEFAULT_POLICY
from validator.depot_client import DepotClient, DepotError
from validator.periodic import Backoff, sleep_or_wake

log = structlog.get_logger(__name__)

POLICY_NAME: Final = "policy.signed"


class PolicyRefused(ValueError):
    """A policy that failed its signature or content checks; the one in force stays."""


def open_policy(verifier: ListVerifier, envelope: Signed) -> Policy:
    """The policy inside a signed envelope, checked, or raise :class:`PolicyRefused`."""
    try:
        body = unseal(verifier, envelope)
        policy = decode(Policy, body)
    except (SignatureInvalid, MessageError) as err:
        raise PolicyRefused(f"policy refused: {err}") from err
    try:
        ZoneInfo(policy.timezone)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise PolicyRefused(f"policy names an unknown time zone {policy.timezone!r}") from err
    for rule in policy.rules:
        for window in rule.windows:
            if window.start_min == window.end_min:
                raise PolicyRefused("policy has an empty time window (start equals end)")
    return policy


class PolicyStore:
    """The policy in force, and how it is refreshed."""

    def __init__(self, data_dir: Path, verifier: ListVerifier) -> None:
        self._path = data_dir / POLICY_NAME
        self._verifier = verifier
        self._current = DEFAULT_POLICY
        self.problem: str | None = None
        self.wake = asyncio.Event()

    @property
    def current(self) -> Policy:
        """The policy to decide under now."""
        return self._current

    def _refused(self, event: str, problem: str) -> None:
        self.problem = problem
        log.error(event, error=problem)

    def load(self) -> None:
        """Take the policy kept on disk, if it still checks out."""
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            log.warning("policy_none_yet_using_default")
            return
        except OSError as err:
            self._refused("policy_unreadable", f"cannot read {self._path}: {err}")
            return
        try:
            policy = open_policy(self._verifier, decode(Signed, data))
        except (PolicyRefused, MessageError) as err:
            self._refused("policy_on_disk_refused", str(err))
            return
        self._current = policy
        log.info("policy_loaded", policy_version=policy.version)

    def accept(self, envelope: Signed) -> bool:
        """Put a fetched policy in force if it is newer; whether it was.

        Raises :class:`PolicyRefused`; the policy in force then stays.
        """
        policy = open_policy(self._verifier, envelope)
        if policy.version <= self._current.version and self._current is not DEFAULT_POLICY:
            if policy.version < self._current.version:
                log.warning(
                    "policy_older_ignored", offered=policy.version, in_use=self._current.version
                )
            return False
        not_saved: str | None = None
        try:
            write_atomically(self._path, encode(envelope))
        except OSError as err:
            not_saved = str(err)
        if not_saved is not None:
            # Verified already: in force now, fetched again after a restart.
            log.error("policy_not_saved", error=not_saved, policy_version=policy.version)
        self._current = policy
        self.problem = None
        log.info(
            "policy_updated",
            policy_version=policy.version,
            offline_unknown=policy.offline_unknown.value,
            stale_list=policy.stale_list.value,
            max_list_age_s=policy.max_list_age_s,
        )
        return True

    async def refresh(self, client: DepotClient) -> bool:
        """Fetch ``GET /v1/policy`` and accept it; whether the policy changed."""
        envelope = await client.call("GET", "/v1/policy", None, Signed)
        return self.accept(envelope)

    async def run(self, client: DepotClient, config: SyncSection) -> None:
        """Refresh on an interval and when woken, backing off on failure; forever."""
        backoff = Backoff(config.backoff_initial_s, config.backoff_max_s)
        while True:
            try:
                await self.refresh(client)
            except DepotError as err:
                self.problem = str(err)
                await sleep_or_wake(self.wake, backoff.next_delay(err.retry_after))
                continue
            except PolicyRefused as err:
                self._refused("policy_refused", str(err))
                await sleep_or_wake(self.wake, backoff.next_delay())
                continue
            backoff.reset()
            await sleep_or_wake(self.wake, config.policy_interval_s)
