"""The online check: a credential a validator's list lacks, answered within a budget.

A recent enough stored answer is served from the database. Otherwise the
Ministry is asked with whatever is left of the budget; its answer is stored
(so the next delta carries the credential) and returned. Any failure to get
an answer (time-out, outage, throttling, open breaker, an answer that makes
no sense) is UNAVAILABLE: the validator then applies its offline policy.
Nothing here ever turns "no answer" into RISKLESS.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import asyncpg
import structlog

from depot_sync.config import CheckSection
from depot_sync.crypto import FieldCipher, credential_context
from depot_sync.metrics import DepotMetrics
from depot_sync.risklist.changes import list_head
from depot_sync.risklist.credentials import (
    EXPIRED,
    NOT_FOUND,
    KnownCredential,
    MinistryFacts,
    MinistryState,
    facts_of,
    find,
    hes_key,
    record_checked_code,
    record_facts,
    stored_code,
)
from protocol.credentials import CredentialKind
from protocol.messages import PROTOCOL_VERSION, CheckAnswer, CheckOutcome, CheckRequest
from protocol.ministry import (
    HesCodeExpired,
    HesCodeNotFound,
    MinistryClient,
    MinistryError,
)
from protocol.risk import Groups

log = structlog.get_logger("hesgate.depot.check")

_OUTCOMES: Final[Mapping[MinistryState, CheckOutcome]] = MappingProxyType(
    {
        MinistryState.FOUND: CheckOutcome.FOUND,
        MinistryState.NOT_FOUND: CheckOutcome.NOT_FOUND,
        MinistryState.EXPIRED: CheckOutcome.EXPIRED,
    }
)


class BadCheck(ValueError):
    """The request contradicts itself; ``field`` names the part."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class _Target:
    """What to ask the Ministry about, and where to store the answer."""

    code: str
    code_key: bytes
    sealed: bytes | None  # set when the code is new to the depot


class OnlineCheck:
    """Answers ``POST /v1/check``."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        cipher: FieldCipher,
        list_key: bytes,
        *,
        ministry: MinistryClient | None,
        settings: CheckSection,
        metrics: DepotMetrics,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._pool = pool
        self._cipher = cipher
        self._list_key = list_key
        self._ministry = ministry
        self._settings = settings
        self._metrics = metrics
        self._now = now

    def _fresh(self, known: KnownCredential) -> bool:
        if known.last_checked_at is None or known.facts.state is MinistryState.UNCHECKED:
            return False
        age = self._now() - known.last_checked_at
        limit = (
            self._settings.cache_s
            if known.facts.state is MinistryState.FOUND
            else self._settings.negative_cache_s
        )
        return age <= dt.timedelta(seconds=limit)

    async def _answer(
        self, facts: MinistryFacts, known: KnownCredential | None, source: str
    ) -> CheckAnswer:
        outcome = _OUTCOMES.get(facts.state, CheckOutcome.UNAVAILABLE)
        self._metrics.checks.labels(outcome.name.lower(), source).inc()
        version = (await list_head(self._pool)).version
        if outcome is not CheckOutcome.FOUND or facts.status is None:
            return CheckAnswer(
                v=PROTOCOL_VERSION,
                outcome=outcome,
                status=None,
                expiry_day=None,
                tckn_last3=None,
                groups=Groups.NONE,
                list_version=version,
            )
        return CheckAnswer(
            v=PROTOCOL_VERSION,
            outcome=outcome,
            status=facts.status,
            expiry_day=facts.expiry_day,
            tckn_last3=facts.tckn_last3 or (known.registered_last3 if known else None),
            groups=known.groups if known else Groups.NONE,
            list_version=version,
        )

    async def unavailable(self, why: str) -> CheckAnswer:
        """The answer when there is no answer."""
        log.info("online check unavailable", why=why)
        return await self._answer(MinistryFacts(MinistryState.UNCHECKED), None, why)

    async def check(self, request: CheckRequest, *, deadline: float) -> CheckAnswer:
        """Answer one check; ``deadline`` is on the running loop's clock."""
        if request.method.kind is CredentialKind.CARD:
            if request.hes_code is not None:
                raise BadCheck("hes_code", "a card is checked by its key alone")
        elif (
            request.hes_code is not None
            and hes_key(self._list_key, request.hes_code) != request.key
        ):
            raise BadCheck("key", "does not match hes_code under the depot's list key")

        known = await find(self._pool, request.key)
        # A card's answer is its code's: so is its age (the refresh job re-checks codes only).
        code_row = known
        if known is not None and known.hes_key is not None:
            code_row = await find(self._pool, known.hes_key)
        if known is not None and code_row is not None and self._fresh(code_row):
            return await self._answer(known.facts, known, "cache")
        target = await self._target(request, known, code_row)
        if target is None:
            if known is None and request.method.kind is CredentialKind.CARD:
                # A card nobody registered: there is no code to ask about.
                return await self._answer(NOT_FOUND, None, "unknown_card")
            return await self.unavailable("nothing to ask")
        facts = await self._ask(target.code, deadline)
        if facts is None:
            return await self.unavailable("ministry")
        await self._store(target, facts)
        return await self._answer(facts, await find(self._pool, request.key), "ministry")

    async def _target(
        self,
        request: CheckRequest,
        known: KnownCredential | None,
        code_row: KnownCredential | None,
    ) -> _Target | None:
        if request.method.kind is CredentialKind.HES_CODE:
            if request.hes_code is None:
                return None
            sealed = None
            if known is None:
                sealed = self._cipher.seal_text(
                    request.hes_code, context=credential_context(request.key)
                )
            return _Target(request.hes_code, request.key, sealed)
        if known is None or code_row is None or code_row.kind is not CredentialKind.HES_CODE:
            return None
        code = stored_code(self._cipher, code_row.key, code_row.value_enc)
        if code is None:
            return None
        return _Target(code, code_row.key, None)

    async def _ask(self, code: str, deadline: float) -> MinistryFacts | None:
        if self._ministry is None:
            self._metrics.ministry_calls.labels("check", "not_configured").inc()
            return None
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0.001:
            self._metrics.ministry_calls.labels("check", "no_budget").inc()
            return None
        try:
            result = await self._ministry.check(code, timeout_s=left)
        except HesCodeNotFound:
            self._metrics.ministry_calls.labels("check", "not_found").inc()
            return NOT_FOUND
        except HesCodeExpired:
            self._metrics.ministry_calls.labels("check", "expired").inc()
            return EXPIRED
        except MinistryError as err:
            self._metrics.ministry_calls.labels("check", type(err).__name__).inc()
            log.warning("ministry gave no answer for an online check", error=type(err).__name__)
            return None
        self._metrics.ministry_calls.labels("check", "found").inc()
        return facts_of(result)

    async def _store(self, target: _Target, facts: MinistryFacts) -> None:
        checked_at = self._now()
        try:
            async with self._pool.acquire() as conn:
                if target.sealed is not None:
                    await record_checked_code(
                        conn,
                        key=target.code_key,
                        sealed_code=target.sealed,
                        facts=facts,
                        checked_at=checked_at,
                    )
                else:
                    await record_facts(conn, [(target.code_key, facts)], checked_at)
        except asyncpg.PostgresError as err:
            # The rider still gets the Ministry's answer; the list learns it at the next refresh.
            log.error("could not store an online check's answer", error=str(err))  # noqa: TRY400
