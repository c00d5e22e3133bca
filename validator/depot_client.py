"""Signed HTTP to the depot, and what the validator learns from every answer.

Every request carries the device's signature headers (:mod:`protocol.signing`).
Every answer, whatever its status, tells the client that the depot is
reachable and what its clock says (the ``Date`` header): the skew is kept,
flagged past the configured bound, and used to time-stamp signatures so a
validator with a wrong clock can still talk to the depot. Failures are typed:
:class:`DepotUnavailable` (no answer, or 5xx/429: try again later, honouring
``Retry-After``), :class:`DepotRefused` (4xx: the depot said no, with its
reason) and :class:`BadAnswer` (an answer that does not decode).
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import urlsplit

import aiohttp
import structlog
from multidict import CIMultiDictProxy

from protocol.codec import MessageError, decode, encode
from protocol.messages import CheckAnswer, CheckRequest
from protocol.signing import sign_request
from validator.gate import OnlineCheckFailed
from validator.status import LinkState

log = structlog.get_logger(__name__)

MSGPACK: Final = "application/msgpack"
M = TypeVar("M")
_NOT_CONTACTED: Final = "not contacted yet"
#: Error bodies are read this far for the log line, no further.
_ERROR_BODY_LIMIT: Final = 512


class DepotError(Exception):
    """A request to the depot did not give a usable answer."""

    #: Seconds the depot asked to wait before the next try (``Retry-After``), if it said.
    #: Only :class:`DepotUnavailable` ever carries one; every loop hands it to its backoff.
    retry_after: float | None = None


class DepotUnavailable(DepotError):
    """No answer, or the depot asked to try again later (``retry_after`` seconds, if it said)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DepotRefused(DepotError):
    """The depot said no (4xx): ``status``, its ``reason`` text and its JSON ``details``."""

    def __init__(
        self, status: int, reason: str, details: Mapping[str, object] | None = None
    ) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason
        self.details: Mapping[str, object] = details or {}


class BadAnswer(DepotError):
    """The depot's answer did not decode as the expected message."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A depot answer: status, headers and the whole body."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(when.timestamp() - current, 0.0)


class DepotClient:
    """The validator's one HTTP client to the depot."""

    def __init__(
        self,
        *,
        base_url: str,
        device_id: str,
        secret: bytes,
        request_timeout_s: float = 30.0,
        clock_skew_bound_s: float = 30.0,
        ca_file: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urlsplit(base_url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._prefix = parts.path.rstrip("/")
        self._device = device_id
        self._secret = secret
        self._timeout_s = request_timeout_s
        self._skew_bound_s = clock_skew_bound_s
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        )
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._online = False
        self._last_contact_ms: int | None = None
        self._skew_s: float | None = None
        self._error: str | None = _NOT_CONTACTED
        self._reconnect_hooks: list[Callable[[], None]] = []
        self._log = log.bind(device=device_id, depot=self._origin)

    # -- lifecycle -----------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # A long keep-alive keeps the connection the heartbeat opened warm
            # for online checks, whose budget has no room for a TLS handshake.
            connector = aiohttp.TCPConnector(ssl=self._ssl, keepalive_timeout=120, limit=8)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        """Close the connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- state ---------------------------------------------------------------------------

    def on_reconnect(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` each time the depot answers again after being unreachable."""
        self._reconnect_hooks.append(hook)

    @property
    def online(self) -> bool:
        """Whether the depot answered the last request."""
        return self._online

    @property
    def clock_skew_s(self) -> float | None:
        """The local clock minus the depot's (seconds), from the last ``Date`` header."""
        return self._skew_s

    def link_state(self, online_failures: int = 0) -> LinkState:
        """The link as the status page shows it."""
        skew = self._skew_s
        return LinkState(
            online=self._online,
            last_contact_ms=self._last_contact_ms,
            clock_skew_s=skew,
            clock_skew_flagged=skew is not None and abs(skew) > self._skew_bound_s,
            online_failures=online_failures,
            error=self._error,
        )

    def depot_now_ms(self) -> int:
        """The depot's time as best known: the local clock corrected by the skew."""
        return int((self._clock() - (self._skew_s or 0.0)) * 1000)

    def _reached(self, headers: Mapping[str, str]) -> None:
        self._last_contact_ms = int(self._clock() * 1000)
        self._note_clock(headers)
        if not self._online:
            self._online = True
            self._log.info("depot_reachable")
            for hook in self._reconnect_hooks:
                hook()
        self._error = None

    def _note_clock(self, headers: Mapping[str, str]) -> None:
        now = self._clock()
        date = headers.get("Date")
        if date:
            try:
                server = email.utils.parsedate_to_datetime(date).timestamp()
            except (TypeError, ValueError):
                server = None
            if server is not None:
                previous = self._skew_s
                # The Date header has whole seconds: read it against the middle of its second.
                self._skew_s = now - (server + 0.5)
                flagged = abs(self._skew_s) > self._skew_bound_s
                was = previous is not None and abs(previous) > self._skew_bound_s
                if flagged and not was:
                    self._log.error(
                        "clock_skew_past_bound",
                        skew_s=round(self._skew_s, 1),
                        bound_s=self._skew_bound_s,
                    )

    def _unreachable(self, problem: str) -> None:
        # Once per outage at warning; every failure during it only at debug.
        if self._online or self._error == _NOT_CONTACTED:
            self._log.warning("depot_unreachable", error=problem)
        else:
            self._log.debug("depot_unreachable", error=problem)
        self._online = False
        self._error = problem

    # -- requests ------------------------------------------------------------------------

    def _sign(self, method: str, full_path: str, body: bytes) -> dict[str, str]:
        # Signed with the depot's time as best known, so a wrong clock still gets through.
        return sign_request(
            device_id=self._device,
            secret=self._secret,
            method=method,
            path_qs=full_path,
            body=body,
            now_ms=self.depot_now_ms(),
        )

    async def request(
        self,
        method: str,
        path_qs: str,
        body: bytes = b"",
        *,
        timeout_s: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send a signed request and read the whole answer.

        Raises :class:`DepotUnavailable` for no answer, a 5xx or a 429, and
        :class:`DepotRefused` for any other status of 400 or more.
        """
        full_path = self._prefix + path_qs
        all_headers = {**(headers or {}), **self._sign(method, full_path, body)}
        if body:
            all_headers["Content-Type"] = MSGPACK
        timeout = aiohttp.ClientTimeout(total=timeout_s or self._timeout_s)
        try:
            async with self._http().request(
                method,
                self._origin + full_path,
                data=body or None,
                headers=all_headers,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                data = await response.read()
                reply = Reply(response.status, response.headers, data)
        except TimeoutError as err:
            self._unreachable(f"{method} {path_qs}: no answer in time")
            raise DepotUnavailable(f"{method} {path_qs}: timed out") from err
        except aiohttp.ClientError as err:
            self._unreachable(f"{method} {path_qs}: {err.__class__.__name__}: {err}")
            raise DepotUnavailable(f"{method} {path_qs}: {err}") from err
        self._answered(method, path_qs, reply)
        return reply

    def _answered(self, method: str, path_qs: str, reply: Reply) -> None:
        """Note what an answer says about the link, then raise for an error status."""
        if reply.status >= 500:
            # A gateway or a depot in trouble: its clock still counts, its service does not.
            self._note_clock(reply.headers)
            self._unreachable(f"{method} {path_qs}: HTTP {reply.status}")
        else:
            self._reached(reply.headers)
        self.raise_for_status(method, path_qs, reply)

    def raise_for_status(self, method: str, path_qs: str, reply: Reply) -> None:
        """Turn an error status into the matching typed error."""
        if reply.status < 400:
            return
        reason = _reason_of(reply)
        if reply.status >= 500 or reply.status == 429:
            wait = retry_after_s(reply.headers.get("Retry-After"), self._clock())
            self._error = f"{method} {path_qs}: HTTP {reply.status} {reason}"
            raise DepotUnavailable(
                f"{method} {path_qs}: HTTP {reply.status}: {reason}", retry_after=wait
            )
        self._error = f"{method} {path_qs}: HTTP {reply.status} {reason}"
        raise DepotRefused(reply.status, reason, _json_of(reply))

    async def call(
        self,
        method: str,
        path_qs: str,
        message: object | None,
        answer_type: type[M],
        *,
        timeout_s: float | None = None,
    ) -> M:
        """Send a MessagePack message (or nothing) and decode the answer as ``answer_type``."""
        body = b"" if message is None else encode(message)
        reply = await self.request(
            method, path_qs, body, timeout_s=timeout_s, headers={"Accept": MSGPACK}
        )
        return self.decode_reply(path_qs, reply, answer_type)

    def decode_reply(self, path_qs: str, reply: Reply, answer_type: type[M]) -> M:
        """Decode an answer's body, or raise :class:`BadAnswer`."""
        try:
            return decode(answer_type, reply.body)
        except MessageError as err:
            self._error = f"{path_qs}: bad answer: {err}"
            raise BadAnswer(f"{path_qs}: {answer_type.__name__}: {err}") from err

    @contextlib.asynccontextmanager
    async def stream(
        self, path_qs: str, *, headers: Mapping[str, str], read_timeout_s: float
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A signed GET whose body the caller reads in chunks (the snapshot download).

        Errors while reading the body become :class:`DepotUnavailable` too.
        """
        full_path = self._prefix + path_qs
        # No total limit: a large file on a slow link takes as long as it takes,
        # but a stalled one fails after read_timeout_s without a byte.
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._timeout_s, sock_read=read_timeout_s
        )
        try:
            async with self._http().get(
                self._origin + full_path,
                headers={**headers, **self._sign("GET", full_path, b"")},
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                if response.status >= 400:
                    body = await response.content.read(_ERROR_BODY_LIMIT)
                    self._answered("GET", path_qs, Reply(response.status, response.headers, body))
                self._reached(response.headers)
                yield response
        except TimeoutError as err:
            self._unreachable(f"GET {path_qs}: no answer in time")
            raise DepotUnavailable(f"GET {path_qs}: timed out") from err
        except aiohttp.ClientError as err:
            self._unreachable(f"GET {path_qs}: {err.__class__.__name__}: {err}")
            raise DepotUnavailable(f"GET {path_qs}: {err}") from err

    # -- online check ----------------------------------------------------------------------

    async def check(self, request: CheckRequest, timeout_s: float) -> CheckAnswer:
        """``POST /v1/check`` within ``timeout_s`` (the gate's online budget)."""
        try:
            return await self.call("POST", "/v1/check", request, CheckAnswer, timeout_s=timeout_s)
        except DepotError as err:
            raise OnlineCheckFailed(str(err)) from err


def _json_of(reply: Reply) -> dict[str, object] | None:
    """An error answer's JSON object (the depot's errors are ``{"error", "message", ...}``)."""
    try:
        parsed = json.loads(reply.body[:_ERROR_BODY_LIMIT])
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _reason_of(reply: Reply) -> str:
    """A short, printable reason from an error answer's body.

    The depot's JSON errors read ``error: message (reason)``; anything else (a
    gateway's HTML page) is shown as squeezed text.
    """
    parsed = _json_of(reply)
    if parsed is not None and "error" in parsed:
        text = f"{parsed['error']}: {parsed.get('message', '')}"
        if parsed.get("reason"):
            text += f" ({parsed['reason']})"
    else:
        text = reply.body[:_ERROR_BODY_LIMIT].decode("utf-8", "replace")
    return " ".join(text.split())[:200] or "(no reason given)"
