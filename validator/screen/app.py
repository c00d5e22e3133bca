"""The screen's aiohttp app: the page, its live updates, the keypad and ``/api/status``.

Routes:

* ``GET /``: the page (plain HTML, CSS and JavaScript; no build step).
* ``GET /events``: server-sent events, one ``state`` event per change, each
  the same JSON as ``/api/status``.
* ``GET /api/status``: the status as JSON.
* ``POST /api/keypad``: ``{"code": "...", "tckn_last3": "..."}`` (JSON only, so
  a page from elsewhere cannot post it as a form); answers the decision.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from types import MappingProxyType
from typing import Any, Final

import structlog
from aiohttp import web

from validator.answer import Answer
from validator.status import StatusBoard

log = structlog.get_logger(__name__)

KeypadHandler = Callable[[str, str], Awaitable[Answer]]

BOARD: web.AppKey[StatusBoard] = web.AppKey("board", StatusBoard)
KEYPAD: web.AppKey[KeypadHandler] = web.AppKey("keypad")

_STATIC = resources.files("validator.screen") / "static"
_TYPES: Final[Mapping[str, str]] = MappingProxyType(
    {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
)
_FILES = ("index.html", "screen.js", "screen.css")
#: Keypad fields are short; anything longer is not a keypad.
_MAX_KEYPAD_BODY = 1024


async def page(request: web.Request) -> web.Response:
    """The screen page and its two static files."""
    name = request.match_info.get("name", "index.html")
    if name not in _FILES:
        raise web.HTTPNotFound
    body = (_STATIC / name).read_text(encoding="utf-8")
    content_type = _TYPES[name[name.rindex(".") :]]
    return web.Response(text=body, content_type=content_type, headers={"Cache-Control": "no-cache"})


async def status(request: web.Request) -> web.Response:
    """``GET /api/status``."""
    return web.json_response(request.app[BOARD].status().to_json())


async def events(request: web.Request) -> web.StreamResponse:
    """``GET /events``: every state change as a server-sent event."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    try:
        async for state in request.app[BOARD].subscribe():
            data = json.dumps(state, ensure_ascii=False, separators=(",", ":"))
            await response.write(f"event: state\ndata: {data}\n\n".encode())
    except ConnectionResetError:
        log.debug("screen_events_client_gone")
    return response


def _field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"{name}: expected a string"}),
            content_type="application/json",
        )
    return value


async def keypad(request: web.Request) -> web.Response:
    """``POST /api/keypad``: decide on a typed HES code and T.C. digits."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="send application/json")
    if request.content_length is not None and request.content_length > _MAX_KEYPAD_BODY:
        raise web.HTTPRequestEntityTooLarge(
            max_size=_MAX_KEYPAD_BODY, actual_size=request.content_length
        )
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"not JSON: {err}"}), content_type="application/json"
        ) from err
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "expected a JSON object"}), content_type="application/json"
        )
    answer = await request.app[KEYPAD](_field(body, "code"), _field(body, "tckn_last3"))
    return web.json_response(answer.to_json())


async def _close_streams(app: web.Application) -> None:
    app[BOARD].close()


def make_screen_app(board: StatusBoard, on_keypad: KeypadHandler) -> web.Application:
    """The screen's web app, showing ``board`` and sending keypad entries to ``on_keypad``."""
    app = web.Application(client_max_size=_MAX_KEYPAD_BODY * 4)
    app[BOARD] = board
    app[KEYPAD] = on_keypad
    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", page)
    app.router.add_get("/events", events)
    app.router.add_get("/api/status", status)
    app.router.add_post("/api/keypad", keypad)
    app.on_shutdown.append(_close_streams)
    return app
