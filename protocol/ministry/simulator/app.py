"""The simulated Ministry service as an aiohttp application.

Serves every documented endpoint under both the live and the test base
paths, with Basic auth, the bulk limit, JHipster error bodies and the
configured faults; plus a JSON admin API under ``/admin/`` to change faults,
schedule status changes, read the counters and export the population:

- ``GET /admin/faults``: the faults in force and their run-time state;
  ``PUT`` replaces them (``{}`` clears), ``PATCH`` merges, ``DELETE`` clears.
- ``GET /admin/stats``: calls, in flight, max in flight, per endpoint and
  status; ``DELETE`` zeroes them.
- ``POST /admin/schedule``: ``{"hes_code", "at" | "in_s", "status"?,
  "expires_at"?}`` or a list of them; ``GET`` lists changes not applied yet.
- ``GET /admin/population?format=json|csv|registrations``: every record, or
  card registrations for ``hes-depot import-registrations``.
- ``PUT /admin/population/{code}``: add or replace one record.
- ``GET /healthz``: liveness.

Run it with ``handler_cancellation=True`` (as :func:`running_simulator` and
the CLI do) so a call whose client went away stops counting as in flight.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import datetime as dt
import functools
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import structlog
from aiohttp import hdrs, web

from protocol import hescode
from protocol.ministry import wire
from protocol.ministry.simulator import answers
from protocol.ministry.simulator.config import Environment, PopulationSection, SimulatorConfig
from protocol.ministry.simulator.faults import FaultAction, FaultController, Faults, Injection
from protocol.ministry.simulator.population import (
    Population,
    PopulationError,
    change_from_mapping,
    change_to_mapping,
    record_from_mapping,
)
from protocol.ministry.simulator.registrations import registrations_csv
from protocol.ministry.simulator.stats import SimulatorStats
from runtime.config import ConfigError, build

Clock = Callable[[], dt.datetime]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_JSON: Final = "application/json"
_PROBLEM_JSON: Final = "application/problem+json"
_dumps = functools.partial(json.dumps, ensure_ascii=False, separators=(",", ":"))


def utc_now() -> dt.datetime:
    """The wall clock, aware UTC: the simulator's default clock."""
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class SimulatorState:
    """Everything one simulator app owns."""

    config: SimulatorConfig
    population: Population
    faults: FaultController
    stats: SimulatorStats
    clock: Clock


STATE: Final = web.AppKey("ministry_simulator", SimulatorState)


def population_from_config(section: PopulationSection, *, now: dt.datetime) -> Population:
    """Load ``section.file``, or generate ``section.size`` people from ``section.seed``."""
    if section.file is not None:
        return Population.load(section.file)
    return Population.generate(
        section.seed,
        section.size,
        now=now,
        risky_rate=section.risky_rate,
        expired_rate=section.expired_rate,
        never_expires_rate=section.never_expires_rate,
    )


def make_simulator_app(
    config: SimulatorConfig,
    *,
    population: Population | None = None,
    clock: Clock = utc_now,
) -> web.Application:
    """A simulated Ministry service.

    ``population`` defaults to the one ``config`` describes; ``clock`` (aware
    UTC) decides expiry and when scheduled changes take effect.
    """
    if population is None:
        population = population_from_config(config.population, now=clock())
    state = SimulatorState(
        config=config,
        population=population,
        faults=FaultController(config.faults),
        stats=SimulatorStats(),
        clock=clock,
    )
    app = web.Application(middlewares=[_admin_guard])
    app[STATE] = state
    environments: tuple[tuple[Environment, str], ...] = (
        ("live", wire.LIVE_PATH),
        ("test", wire.TEST_PATH),
    )
    for environment, prefix in environments:
        for endpoint in (*wire.SINGLE_ENDPOINTS, *wire.BULK_ENDPOINTS):
            app.router.add_post(prefix + endpoint, _ministry_handler(endpoint, environment))
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/admin/faults", _get_faults)
    app.router.add_put("/admin/faults", _put_faults)
    app.router.add_patch("/admin/faults", _patch_faults)
    app.router.add_delete("/admin/faults", _delete_faults)
    app.router.add_get("/admin/stats", _get_stats)
    app.router.add_delete("/admin/stats", _delete_stats)
    app.router.add_post("/admin/schedule", _post_schedule)
    app.router.add_get("/admin/schedule", _get_schedule)
    app.router.add_get("/admin/population", _get_population)
    app.router.add_put("/admin/population/{code}", _put_record)
    return app


_log = structlog.get_logger("hesgate.ministry.simulator")


class _BadRequest(Exception):
    """The request body is not what the endpoint takes."""


def _ministry_handler(endpoint: str, environment: Environment) -> Handler:
    plus = endpoint in wire.PLUS_ENDPOINTS
    bulk = endpoint in wire.BULK_ENDPOINTS

    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        state.stats.begin(endpoint)
        status: int | None = None
        try:
            response = await _answer(request, state, environment, endpoint, plus=plus, bulk=bulk)
            status = response.status
            return response
        finally:
            state.stats.end(status)
            _log.debug("call", endpoint=endpoint, environment=environment, status=status)

    return handle


async def _answer(
    request: web.Request,
    state: SimulatorState,
    environment: Environment,
    endpoint: str,
    *,
    plus: bool,
    bulk: bool,
) -> web.Response:
    injection = state.faults.draw()
    if injection.latency_s > 0:
        await asyncio.sleep(injection.latency_s)
    refusal = _authenticate(request, state, environment, injection.reject_credentials)
    if refusal is not None:
        return refusal
    if injection.action is not None and injection.action is not FaultAction.GARBAGE:
        return await _injected(injection, state.faults.current)
    try:
        payload = json.loads(await request.read())
        if bulk:
            status, body = _bulk_answer(state, payload, plus=plus)
        else:
            status, body = _single_answer(state, payload, endpoint, plus=plus)
    except (_BadRequest, UnicodeDecodeError, json.JSONDecodeError) as err:
        status, body = 400, answers.jhipster_error(answers.INVALID_REQUEST_KEY, message=str(err))
    if injection.action is FaultAction.GARBAGE:
        return _garbage(injection, body)
    return web.Response(
        text=_dumps(body), status=status, content_type=_JSON if status == 200 else _PROBLEM_JSON
    )


def _single_answer(
    state: SimulatorState, payload: Any, endpoint: str, *, plus: bool
) -> tuple[int, dict[str, Any]]:
    if not isinstance(payload, dict) or not isinstance(payload.get(wire.HES_CODE), str):
        raise _BadRequest(f"the body must be an object with a string {wire.HES_CODE}")
    if endpoint == wire.CHECK_VISITOR:
        location = payload.get("location")
        if location is not None and not (
            isinstance(location, dict)
            and all(
                isinstance(location.get(k), int | float) and not isinstance(location.get(k), bool)
                for k in ("latitude", "longitude")
            )
        ):
            raise _BadRequest("location needs numeric latitude and longitude")
    state.stats.codes_asked += 1
    code = hescode.normalize(payload[wire.HES_CODE])
    now = state.clock()
    record = state.population.lookup(code, now) if hescode.is_valid(code) else None
    key = answers.error_key_for(record, now)
    if key is not None or record is None:
        return 400, answers.jhipster_error(key or wire.NOT_FOUND_KEY)
    return 200, answers.result(record, plus=plus)


def _bulk_answer(state: SimulatorState, payload: Any, *, plus: bool) -> tuple[int, dict[str, Any]]:
    if not isinstance(payload, list):
        raise _BadRequest("the body must be a JSON array")
    if len(payload) > wire.BULK_LIMIT:
        return 400, answers.jhipster_error(answers.TOO_MANY_KEY)
    asked: list[str] = []
    for item in payload:
        if not isinstance(item, dict) or not isinstance(item.get(wire.HES_CODE), str):
            raise _BadRequest(f"every item must be an object with a string {wire.HES_CODE}")
        asked.append(item[wire.HES_CODE])
    state.stats.codes_asked += len(asked)
    now = state.clock()
    state.population.apply_due(now)
    success: dict[str, Any] = {}
    unsuccess: dict[str, str] = {}
    for sent in asked:
        code = hescode.normalize(sent)
        record = state.population.get(code) if hescode.is_valid(code) else None
        key = answers.error_key_for(record, now)
        if key is not None or record is None:
            unsuccess[sent] = key or wire.NOT_FOUND_KEY
        else:
            success[sent] = answers.result(record, plus=plus)
    return 200, {wire.SUCCESS_MAP: success, wire.UNSUCCESS_MAP: unsuccess}


def _authenticate(
    request: web.Request, state: SimulatorState, environment: Environment, window_open: bool
) -> web.Response | None:
    scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    name = password = ""
    if scheme.lower() == "basic":
        try:
            name, _, password = (
                base64.b64decode(token.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            name = password = ""
    verdict = (
        None if window_open or not name else state.config.auth.check(environment, name, password)
    )
    if verdict is True:
        return None
    if verdict is False:
        body = answers.problem(
            403, "Forbidden", f"this user may not call the {environment} service"
        )
        return web.Response(text=_dumps(body), status=403, content_type=_PROBLEM_JSON)
    body = answers.problem(401, "Unauthorized", "Full authentication is required")
    return web.Response(
        text=_dumps(body),
        status=401,
        content_type=_PROBLEM_JSON,
        headers={hdrs.WWW_AUTHENTICATE: 'Basic realm="hesservis", charset="UTF-8"'},
    )


async def _injected(injection: Injection, faults: Faults) -> web.Response:
    action = injection.action
    if action is FaultAction.HANG:
        await asyncio.sleep(faults.hang_s)
        return web.Response(text=answers.GATEWAY_PAGE, status=504, content_type="text/html")
    if action is FaultAction.GATEWAY:
        return web.Response(text=answers.GATEWAY_PAGE, status=502, content_type="text/html")
    if action is FaultAction.THROTTLE:
        headers = {}
        if faults.retry_after_s is not None:
            headers[hdrs.RETRY_AFTER] = str(faults.retry_after_s)
        body = answers.problem(429, "Too Many Requests", "rate limit exceeded")
        return web.Response(
            text=_dumps(body), status=429, content_type=_PROBLEM_JSON, headers=headers
        )
    status = 503 if action is FaultAction.UNAVAILABLE else 500
    title = "Service Unavailable" if status == 503 else "Internal Server Error"
    body = answers.problem(status, title, "simulated failure")
    return web.Response(text=_dumps(body), status=status, content_type=_PROBLEM_JSON)


def _garbage(injection: Injection, body: dict[str, Any]) -> web.Response:
    if injection.garbage_kind == "html":
        return web.Response(text=answers.MAINTENANCE_PAGE, status=200, content_type="text/html")
    if injection.garbage_kind == "truncated":
        text = _dumps(body)
        return web.Response(text=text[: max(len(text) // 2, 1)], status=200, content_type=_JSON)
    return web.Response(text=_dumps({"status": 200, "data": body}), status=200, content_type=_JSON)


@web.middleware
async def _admin_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[STATE].config.server.admin_token
    if token is not None and request.path.startswith("/admin/"):
        scheme, _, given = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            return _admin_error(401, "the admin API needs Authorization: Bearer <admin_token>")
    return await handler(request)


def _admin_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _admin_json(request: web.Request) -> Any:
    try:
        return json.loads(await request.read() or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise web.HTTPBadRequest(
            text=_dumps({"error": f"the body is not JSON: {err}"}), content_type=_JSON
        ) from err


async def _healthz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({"status": "ok", "codes": len(state.population)})


async def _get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].faults.status())


async def _set_faults(request: web.Request, *, merge: bool) -> web.Response:
    state = request.app[STATE]
    body = await _admin_json(request)
    if not isinstance(body, dict):
        return _admin_error(400, "the body must be a JSON object of fault settings")
    data = {**dataclasses.asdict(state.faults.current), **body} if merge else body
    try:
        faults = build(Faults, data, "faults")
    except ConfigError as err:
        return _admin_error(400, str(err))
    state.faults.set(faults)
    _log.info("faults set", **{k: v for k, v in dataclasses.asdict(faults).items() if v})
    return web.json_response(state.faults.status())


async def _put_faults(request: web.Request) -> web.Response:
    return await _set_faults(request, merge=False)


async def _patch_faults(request: web.Request) -> web.Response:
    return await _set_faults(request, merge=True)


async def _delete_faults(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.faults.clear()
    _log.info("faults cleared")
    return web.json_response(state.faults.status())


async def _get_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].stats.as_dict())


async def _delete_stats(request: web.Request) -> web.Response:
    stats = request.app[STATE].stats
    stats.reset()
    return web.json_response(stats.as_dict())


async def _post_schedule(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _admin_json(request)
    rows = body if isinstance(body, list) else [body]
    now = state.clock()
    try:
        changes = [
            change_from_mapping(row, f"change {i}", now=now) for i, row in enumerate(rows, 1)
        ]
    except PopulationError as err:
        return _admin_error(400, str(err))
    unknown = [c.hes_code for c in changes if c.hes_code not in state.population]
    if unknown:
        return _admin_error(400, f"unknown code {unknown[0]}")
    for change in changes:
        state.population.schedule(change)
    _log.info("status changes scheduled", count=len(changes))
    pending = [change_to_mapping(c) for c in state.population.pending()]
    return web.json_response({"scheduled": len(changes), "pending": pending}, status=201)


async def _get_schedule(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.population.apply_due(state.clock())
    return web.json_response([change_to_mapping(c) for c in state.population.pending()])


async def _get_population(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.population.apply_due(state.clock())
    form = request.query.get("format", "json")
    if form == "csv":
        return web.Response(text=state.population.to_csv(), content_type="text/csv")
    if form == "json":
        return web.Response(text=_dumps(state.population.to_json()), content_type=_JSON)
    if form == "registrations":
        return web.Response(text=registrations_csv(state.population), content_type="text/csv")
    return _admin_error(400, "format is json, csv or registrations")


async def _put_record(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _admin_json(request)
    if isinstance(body, dict):
        body = {"hes_code": request.match_info["code"], **body}
    try:
        record = record_from_mapping(body, "record")
    except PopulationError as err:
        return _admin_error(400, str(err))
    if record.hes_code != hescode.normalize(request.match_info["code"]):
        return _admin_error(400, "the record's hes_code differs from the one in the path")
    state.population.put(record)
    return web.json_response({"hes_code": record.hes_code, "codes": len(state.population)})
