"""What every endpoint shares: JSON errors, bounded bodies, device signatures, operator tokens.

Every error is a JSON object ``{"error": code, "message": text, ...}`` with
the status code; a malformed message also names the ``field``, a refused
signature its ``reason`` (see docs/depot.md).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import structlog
from aiohttp import hdrs, web

from depot_sync.operations.operators import Operator, Role, authenticate
from depot_sync.state import DEPOT
from protocol import codec
from protocol.signing import AuthError, NonceStoreFull, verify_request

log = structlog.get_logger("hesgate.depot.api")

MSGPACK: Final = "application/msgpack"
M = TypeVar("M")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An answer other than success: becomes a JSON error response."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def response(self) -> web.Response:
        """The JSON response."""
        headers = {}
        if self.status == 401 and "reason" in self.extra:
            headers[hdrs.WWW_AUTHENTICATE] = f'HesgateDevice reason="{self.extra["reason"]}"'
        elif self.status == 401:
            headers[hdrs.WWW_AUTHENTICATE] = 'Bearer realm="hesgate-depot"'
        return web.json_response(
            {"error": self.code, "message": self.message, **self.extra},
            status=self.status,
            headers=headers,
        )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn :class:`ApiError` into its response, and aiohttp's own 4xx into the same shape."""
    try:
        return await handler(request)
    except ApiError as err:
        return err.response()
    except web.HTTPRequestEntityTooLarge as err:
        return ApiError(413, "too_large", err.text or "the body is too large").response()
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as err:
        return ApiError(
            err.status, "not_found" if err.status == 404 else "method_not_allowed", err.reason
        ).response()


async def read_body(request: web.Request) -> bytes:
    """The request body, refused with 413 before reading when it is declared too large."""
    limit = request.app[DEPOT].config.server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "too_large", f"the body is larger than {limit} bytes")
    return await request.read()


def decode_body(cls: type[M], body: bytes, *, max_bytes: int) -> M:
    """A message from the body, or 400 naming the field (413 when it holds too much)."""
    try:
        return codec.decode(cls, body, max_bytes=max_bytes)
    except codec.MessageTooLarge as err:
        raise ApiError(413, "too_large", str(err), field=err.path or None) from err
    except codec.MessageError as err:
        raise ApiError(400, "malformed", str(err), field=err.path or None) from err


def msgpack_response(
    body: bytes, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A MessagePack response."""
    return web.Response(body=body, status=status, content_type=MSGPACK, headers=headers)


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """An authenticated validator request."""

    device: str
    body: bytes


SignedHandler = Callable[[web.Request, SignedRequest], Awaitable[web.StreamResponse]]


def device_signed(handler: SignedHandler) -> Handler:
    """Check the request's device signature before ``handler`` sees it (401 otherwise)."""

    @functools.wraps(handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        depot = request.app[DEPOT]
        body = await read_body(request)
        try:
            device = await verify_request(
                method=request.method,
                path_qs=request.raw_path,
                headers=request.headers,
                body=body,
                secrets=depot.secrets,
                nonces=depot.nonces,
                window_ms=depot.config.auth.window_s * 1000,
            )
        except AuthError as err:
            depot.metrics.auth_failures.labels(err.reason.value).inc()
            log.info(
                "device request refused",
                reason=err.reason.value,
                device=request.headers.get("X-Hesgate-Device", "")[:64],
                path=request.path,
            )
            raise ApiError(
                401, "unauthorized", err.detail or str(err), reason=err.reason.value
            ) from err
        except NonceStoreFull as err:
            raise ApiError(503, "busy", "cannot check the request now: try again") from err
        depot.last_seen.saw(device)
        structlog.contextvars.bind_contextvars(device=device)
        try:
            return await handler(request, SignedRequest(device, body))
        finally:
            structlog.contextvars.unbind_contextvars("device")

    return checked


OperatorHandler = Callable[[web.Request, Operator], Awaitable[web.StreamResponse]]


def operator_only(role: Role) -> Callable[[OperatorHandler], Handler]:
    """Require a bearer token of an operator whose role covers ``role``."""

    def wrap(handler: OperatorHandler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            depot = request.app[DEPOT]
            scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise ApiError(401, "unauthorized", "an operator bearer token is required")
            operator = await authenticate(depot.pool, token.strip())
            if operator is None:
                raise ApiError(401, "unauthorized", "the token is unknown or revoked")
            if not operator.role.may(role):
                raise ApiError(403, "forbidden", f"this needs the {role.value} role")
            return await handler(request, operator)

        return checked

    return wrap
