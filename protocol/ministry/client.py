"""The depot's client for the Ministry of Health G2G HES service.

One :class:`MinistryClient` per set of credentials. Every call goes through
one concurrency limit, one circuit breaker and stamina's retries (exponential
backoff with jitter, up to ``max_attempts``, never past the caller's
deadline). Only "no answer" failures are retried; answers about a code
(not found, expired) and refused credentials are not.

The password and the Authorization header it makes never reach a log line,
a ``repr`` or an exception message, and the HES codes asked are not logged.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import aiohttp
import stamina
import structlog
from aiohttp import hdrs
from yarl import URL

from protocol import hescode
from protocol.ministry import wire
from protocol.ministry.breaker import BreakerState, BreakerStatus, CircuitBreaker
from protocol.ministry.errors import (
    CircuitOpen,
    HesCodeAnswer,
    HesCodeExpired,
    HesCodeNotFound,
    HesCodeRejected,
    MinistryAuthError,
    MinistryError,
    MinistryProtocolError,
    MinistryThrottled,
    MinistryTimeout,
    MinistryUnavailable,
)
from protocol.ministry.results import (
    BulkAnswer,
    BulkOutcome,
    HesResult,
    answer_for_key,
    decode_json,
    error_key_of,
    parse_bulk,
    parse_result,
    parse_retry_after,
)
from protocol.ministry.wire import LIVE_BASE_URL, TEST_BASE_URL

__all__ = [
    "LIVE_BASE_URL",
    "TEST_BASE_URL",
    "BreakerState",
    "BreakerStatus",
    "BulkOutcome",
    "CircuitOpen",
    "HesCodeExpired",
    "HesCodeNotFound",
    "HesCodeRejected",
    "HesResult",
    "MinistryAuthError",
    "MinistryClient",
    "MinistryError",
    "MinistryProtocolError",
    "MinistrySettings",
    "MinistryThrottled",
    "MinistryTimeout",
    "MinistryUnavailable",
]

T = TypeVar("T")

#: Larger answers are refused: 500 results are a few hundred kilobytes.
MAX_ANSWER_BYTES: Final = 8 * 1024 * 1024
#: An attempt with less time than this left before the caller's deadline is not started.
_MIN_ATTEMPT_S: Final = 0.01
_USER_AGENT: Final = "hesgate-ministry-client/1"
_LOOPBACK: Final = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True, slots=True)
class MinistrySettings:
    """Where and how to call the Ministry.

    ``base_url`` is :data:`LIVE_BASE_URL`, :data:`TEST_BASE_URL` or a
    simulator's. ``timeout_s`` bounds one attempt; ``max_attempts`` counts
    the first try. Waits between attempts grow from ``retry_wait_initial_s``
    to ``retry_wait_max_s`` with up to ``retry_jitter_s`` of jitter; a 429's
    ``Retry-After`` replaces that wait, and one longer than
    ``max_retry_after_s`` is not waited for. ``bulk_chunk_size`` codes go in
    one bulk call (at most 500, the service's limit).
    """

    base_url: str
    username: str
    password: str = field(repr=False)
    timeout_s: float = 5.0
    concurrency: int = 4
    max_attempts: int = 4
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 30.0
    retry_wait_initial_s: float = 0.1
    retry_wait_max_s: float = 2.0
    retry_jitter_s: float = 0.2
    max_retry_after_s: float = 30.0
    bulk_chunk_size: int = wire.BULK_LIMIT

    def __post_init__(self) -> None:
        url = URL(self.base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url must be an http(s) URL, got {self.base_url!r}")
        if url.user is not None or url.password is not None:
            raise ValueError("base_url must not carry credentials: set username and password")
        if not self.username or ":" in self.username:
            raise ValueError("username must be set and must not contain ':'")
        if not self.password:
            raise ValueError("password must be set")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 1 <= self.bulk_chunk_size <= wire.BULK_LIMIT:
            raise ValueError(f"bulk_chunk_size must be between 1 and {wire.BULK_LIMIT}")
        if min(self.retry_wait_initial_s, self.retry_wait_max_s, self.retry_jitter_s) < 0:
            raise ValueError("retry waits must not be negative")
        if self.max_retry_after_s < 0:
            raise ValueError("max_retry_after_s must not be negative")
        # The breaker checks its own arguments the same way.
        CircuitBreaker(self.breaker_threshold, self.breaker_cooldown_s)

    @property
    def environment(self) -> str:
        """``live``, ``test`` or ``custom`` (a simulator or a proxy), from the URL's path."""
        path = URL(self.base_url).path.rstrip("/") + "/"
        if path == wire.LIVE_PATH:
            return "live"
        if path == wire.TEST_PATH:
            return "test"
        return "custom"


class _BasicAuth:
    """The Authorization header, kept where no repr or log can show it."""

    __slots__ = ("_value",)

    def __init__(self, username: str, password: str) -> None:
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self._value = f"Basic {token}"

    def __repr__(self) -> str:
        return "<BasicAuth [redacted]>"

    def headers(self) -> dict[str, str]:
        """The headers of every call."""
        return {
            hdrs.AUTHORIZATION: self._value,
            hdrs.CONTENT_TYPE: "application/json",
            hdrs.ACCEPT: "application/json",
        }


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    content_type: str
    body: bytes
    retry_after: str | None


class MinistryClient:
    """Calls the Ministry's HES endpoints; an async context manager.

    Give it an :class:`aiohttp.ClientSession` to share one (it is then not
    closed here), or let it own one. ``clock`` drives the circuit breaker.
    """

    def __init__(
        self,
        settings: MinistrySettings,
        *,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        base = URL(
            settings.base_url if settings.base_url.endswith("/") else settings.base_url + "/"
        )
        self._urls = {
            name: base.join(URL(name)) for name in (*wire.SINGLE_ENDPOINTS, *wire.BULK_ENDPOINTS)
        }
        self._auth = _BasicAuth(settings.username, settings.password)
        self._session = session
        self._owns_session = session is None
        self._semaphore = asyncio.Semaphore(settings.concurrency)
        self._breaker = CircuitBreaker(
            settings.breaker_threshold, settings.breaker_cooldown_s, clock=clock
        )
        self._log = structlog.get_logger("hesgate.ministry").bind(
            ministry=base.host, environment=settings.environment
        )
        if base.scheme != "https" and base.host not in _LOOPBACK:
            self._log.warning("ministry base URL is not HTTPS: credentials travel in clear text")

    def __repr__(self) -> str:
        return (
            f"<MinistryClient {self._settings.environment} {self._urls[wire.CHECK].host} "
            f"breaker={self._breaker.state}>"
        )

    async def __aenter__(self) -> Self:
        self._ensure_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this client made it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def settings(self) -> MinistrySettings:
        """The settings this client was made with."""
        return self._settings

    @property
    def breaker_state(self) -> BreakerState:
        """Whether calls go through now."""
        return self._breaker.state

    def breaker_status(self) -> BreakerStatus:
        """The breaker's state, failure streak and cool-down left, for operations."""
        return self._breaker.status()

    async def check(self, hes_code: str, *, timeout_s: float | None = None) -> HesResult:
        """Ask ``check-hes-code`` about one code.

        ``timeout_s`` is a deadline for the whole call, retries included
        (zero or less: :class:`MinistryTimeout` at once). Raises
        :class:`~protocol.hescode.InvalidHesCode` before calling anything if
        ``hes_code`` is not a HES code, else a :class:`MinistryError` for
        every failure.
        """
        return await self._single(wire.CHECK, hes_code, plus=False, timeout_s=timeout_s)

    async def check_plus(self, hes_code: str, *, timeout_s: float | None = None) -> HesResult:
        """Like :meth:`check`, through ``check-hes-code-plus`` (vaccination and test fields)."""
        return await self._single(wire.CHECK_PLUS, hes_code, plus=True, timeout_s=timeout_s)

    async def check_many(
        self, hes_codes: Iterable[str], *, plus: bool = False, timeout_s: float | None = None
    ) -> BulkOutcome:
        """Ask about any number of codes through the bulk endpoints.

        Codes are normalised and de-duplicated, sent in chunks of at most
        ``bulk_chunk_size`` under the concurrency limit, and merged into one
        :class:`BulkOutcome` keyed by normalised code. A chunk that fails
        after its retries puts each of its codes in ``failed``; nothing is
        lost and nothing is guessed. Every code is checked for shape before
        any call (:class:`~protocol.hescode.InvalidHesCode`).
        """
        codes = list(dict.fromkeys(hescode.parse(code) for code in hes_codes))
        if not codes:
            return BulkOutcome()
        deadline = self._deadline(timeout_s)
        endpoint = wire.CHECK_BULK_PLUS if plus else wire.CHECK_BULK
        size = self._settings.bulk_chunk_size
        chunks = [codes[i : i + size] for i in range(0, len(codes), size)]
        answers = await asyncio.gather(
            *(
                self._bulk_chunk(endpoint, chunk, plus=plus, deadline=deadline, index=index)
                for index, chunk in enumerate(chunks)
            )
        )
        results: dict[str, HesResult] = {}
        not_found: set[str] = set()
        expired: set[str] = set()
        failed: dict[str, MinistryError] = {}
        for answer in answers:
            results.update(answer.results)
            failed.update(answer.failed)
            for code, said in answer.answers.items():
                if isinstance(said, HesCodeNotFound):
                    not_found.add(code)
                elif isinstance(said, HesCodeExpired):
                    expired.add(code)
                else:
                    failed[code] = said
        outcome = BulkOutcome(results, frozenset(not_found), frozenset(expired), failed)
        log = self._log.warning if failed else self._log.info
        log(
            "bulk check done",
            codes=len(codes),
            chunks=len(chunks),
            results=len(results),
            not_found=len(not_found),
            expired=len(expired),
            failed=len(failed),
        )
        return outcome

    async def _single(
        self, endpoint: str, hes_code: str, *, plus: bool, timeout_s: float | None
    ) -> HesResult:
        code = hescode.parse(hes_code)

        def interpret(reply: _Reply) -> HesResult:
            return parse_result(code, _json_answer(reply, code), plus=plus)

        return await self._call(
            endpoint, {wire.HES_CODE: code}, interpret, deadline=self._deadline(timeout_s), codes=1
        )

    async def _bulk_chunk(
        self, endpoint: str, chunk: list[str], *, plus: bool, deadline: float | None, index: int
    ) -> BulkAnswer:
        def interpret(reply: _Reply) -> BulkAnswer:
            return parse_bulk(chunk, _json_answer(reply, None), plus=plus)

        body = [{wire.HES_CODE: code} for code in chunk]
        try:
            return await self._call(
                endpoint, body, interpret, deadline=deadline, codes=len(chunk), chunk=index
            )
        except MinistryError as err:
            return BulkAnswer({}, {}, dict.fromkeys(chunk, err))

    def _deadline(self, timeout_s: float | None) -> float | None:
        if timeout_s is None:
            return None
        if timeout_s <= 0:
            # A spent budget is a time-out like any other, not a programming error.
            raise MinistryTimeout("the call's deadline had passed before it started")
        return asyncio.get_running_loop().time() + timeout_s

    async def _call(
        self,
        endpoint: str,
        payload: Any,
        interpret: Callable[[_Reply], T],
        *,
        deadline: float | None,
        **context: int,
    ) -> T:
        """One logical call: attempts under stamina's retries, all within ``deadline``."""
        log = self._log.bind(endpoint=endpoint, **context)
        settings = self._settings
        last_error: MinistryError | None = None
        try:
            async with asyncio.timeout_at(deadline):
                async for attempt in stamina.retry_context(
                    on=self._retry_hook(deadline),
                    attempts=settings.max_attempts,
                    timeout=None,
                    wait_initial=settings.retry_wait_initial_s,
                    wait_max=settings.retry_wait_max_s,
                    wait_jitter=settings.retry_jitter_s,
                ):
                    with attempt:
                        try:
                            return await self._attempt(
                                endpoint,
                                payload,
                                interpret,
                                deadline=deadline,
                                number=attempt.num,
                                log=log,
                            )
                        except CircuitOpen as err:
                            if last_error is not None:
                                raise err from last_error
                            raise
                        except MinistryError as err:
                            last_error = err
                            raise
        except TimeoutError as err:
            log.warning("ministry call past its deadline", last_error=_kind(last_error))
            raise MinistryTimeout("no answer within the call's deadline") from (
                last_error or _without_frames(err)
            )
        # stamina re-raises the last failure once attempts run out, so this is never reached.
        raise MinistryUnavailable("no attempt was made")

    def _retry_hook(self, deadline: float | None) -> Callable[[Exception], bool | float]:
        settings = self._settings
        loop = asyncio.get_running_loop()

        def should_retry(exc: Exception) -> bool | float:
            if not isinstance(exc, MinistryError) or not exc.retryable:
                return False
            if deadline is not None and deadline - loop.time() < _MIN_ATTEMPT_S:
                return False
            if isinstance(exc, MinistryThrottled) and exc.retry_after_s is not None:
                wait = exc.retry_after_s
                if wait > settings.max_retry_after_s:
                    return False
                if deadline is not None and loop.time() + wait >= deadline:
                    return False
                return float(wait)
            return True

        return should_retry

    async def _attempt(
        self,
        endpoint: str,
        payload: Any,
        interpret: Callable[[_Reply], T],
        *,
        deadline: float | None,
        number: int,
        log: structlog.typing.FilteringBoundLogger,
    ) -> T:
        async with self._semaphore:
            timeout_s = self._settings.timeout_s
            cut_by_deadline = False
            if deadline is not None:
                left = deadline - asyncio.get_running_loop().time()
                if left < _MIN_ATTEMPT_S:
                    raise MinistryTimeout(
                        "the call's deadline passed before an attempt could start"
                    )
                cut_by_deadline = left < timeout_s
                timeout_s = min(timeout_s, left)
            probe = self._breaker.acquire()
            try:
                reply = await self._exchange(self._urls[endpoint], payload, timeout_s)
                value = interpret(reply)
            except HesCodeAnswer:
                self._breaker.succeeded(probe)
                raise
            except MinistryTimeout:
                # Cut short by the caller's budget, the attempt says nothing about the
                # service's health measured against timeout_s: do not count it.
                if cut_by_deadline:
                    self._breaker.abandoned(probe)
                else:
                    self._breaker.failed(probe)
                log.warning("ministry call timed out", attempt=number, timeout_s=timeout_s)
                raise
            except MinistryAuthError as err:
                self._breaker.failed(probe)
                # No traceback: its frames' locals hold the codes asked.
                log.error("ministry refused our credentials", status=err.status, attempt=number)  # noqa: TRY400
                raise
            except MinistryError as err:
                self._breaker.failed(probe)
                log.warning(
                    "ministry call failed",
                    attempt=number,
                    error=_kind(err),
                    status=getattr(err, "status", None),
                    retryable=err.retryable,
                    breaker=self._breaker.state.value,
                )
                raise
            except BaseException:
                self._breaker.abandoned(probe)
                raise
            self._breaker.succeeded(probe)
            log.debug("ministry call answered", attempt=number, status=reply.status)
            return value

    async def _exchange(self, url: URL, payload: Any, timeout_s: float) -> _Reply:
        """One HTTP exchange. aiohttp's errors become Ministry errors without their frames."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        try:
            async with self._ensure_session().post(
                url,
                data=body,
                headers=self._auth.headers(),
                timeout=aiohttp.ClientTimeout(total=timeout_s),
                allow_redirects=False,
                raise_for_status=False,
            ) as response:
                return _Reply(
                    status=response.status,
                    content_type=response.content_type,
                    body=await _read_capped(response),
                    retry_after=response.headers.get(hdrs.RETRY_AFTER),
                )
        except TimeoutError as err:
            raise MinistryTimeout(f"no answer within {timeout_s:.3g} s") from _without_frames(err)
        except aiohttp.ClientError as err:
            raise MinistryUnavailable(
                f"cannot reach the Ministry: {type(err).__name__}: {str(err)[:200]}"
            ) from _without_frames(err)

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._owns_session:
                raise RuntimeError("the session given to MinistryClient is closed")
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._settings.concurrency),
                headers={hdrs.USER_AGENT: _USER_AGENT},
                trust_env=False,
            )
        return self._session


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for part in response.content.iter_chunked(64 * 1024):
        size += len(part)
        if size > MAX_ANSWER_BYTES:
            raise MinistryProtocolError(
                f"answer larger than {MAX_ANSWER_BYTES} bytes", status=response.status
            )
        parts.append(part)
    return b"".join(parts)


def _json_answer(reply: _Reply, hes_code: str | None) -> Any:
    """The JSON of a 200 answer; every other status becomes its typed failure.

    ``hes_code`` is the code a single call asked about: a 400 with an error
    key is then an answer about it.
    """
    status = reply.status
    if status == 200:
        if "html" in reply.content_type:
            raise MinistryProtocolError("HTTP 200 with an HTML page instead of JSON", status=200)
        return decode_json(reply.body, "the HTTP 200 answer")
    if status == 400:
        key = error_key_of(reply.body)
        if key is not None and hes_code is not None:
            raise answer_for_key(hes_code, key)
        detail = f" with error key {key!r}" if key else ""
        raise MinistryProtocolError(
            f"the Ministry refused the request (HTTP 400{detail})", status=400, retryable=False
        )
    if status in (401, 403):
        raise MinistryAuthError(status)
    if status == 429:
        raise MinistryThrottled(parse_retry_after(reply.retry_after))
    if status >= 500 or status == 408:
        page = " (an HTML page, likely from a gateway)" if "html" in reply.content_type else ""
        raise MinistryUnavailable(f"the Ministry answered HTTP {status}{page}", status=status)
    raise MinistryProtocolError(
        f"unexpected HTTP {status}: check base_url", status=status, retryable=False
    )


def _kind(err: BaseException | None) -> str | None:
    return type(err).__name__ if err is not None else None


def _without_frames(err: BaseException) -> BaseException:
    """Drop the tracebacks down ``err``'s chain before chaining it.

    aiohttp's frames hold the request headers (the Authorization header) in
    their local variables, and a log renderer that shows locals would print
    them. The types and messages stay.
    """
    seen: set[int] = set()
    node: BaseException | None = err
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        node.__traceback__ = None
        node = node.__cause__ or node.__context__
    return err
