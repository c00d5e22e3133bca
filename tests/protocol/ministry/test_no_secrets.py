"""Nothing secret reaches the logs: not the password, not the Authorization header.

The logs are captured as the programs write them (JSON lines), including the
tracebacks a caller logs with ``log.exception`` (structlog renders every
frame's local variables there), and searched.
"""

from __future__ import annotations

import base64
import io
import json
import socket

import pytest
import structlog
from structlog.tracebacks import ExceptionDictTransformer

from protocol.ministry import MinistryClient, MinistryError, MinistrySettings
from protocol.ministry.simulator import SimulatorHandle
from runtime.logs import configure_logging
from tests.protocol.ministry.helpers import LIVE_PASSWORD, LIVE_USER, pick, settings_for

pytestmark = pytest.mark.usefixtures("restore_logging")


def secrets() -> list[str]:
    token = base64.b64encode(f"{LIVE_USER}:{LIVE_PASSWORD}".encode()).decode()
    return [LIVE_PASSWORD, token, f"Basic {token}", "Gizli"]


async def test_no_log_line_repr_or_error_holds_the_password(sim: SimulatorHandle) -> None:
    out = io.StringIO()
    configure_logging("debug", json=True, stream=out)
    depot_log = structlog.get_logger("hesgate.depot")
    errors: list[MinistryError] = []
    codes = sim.population.codes()[:50]
    settings = settings_for(sim, max_attempts=2, breaker_threshold=100, timeout_s=0.15)

    async with MinistryClient(settings) as client:
        depot_log.info("client ready", client=repr(client), settings=repr(settings))
        await client.check(pick(sim.population).hes_code)
        await client.check_many(codes)
        for faults in (
            {"unavailable_rate": 1.0},
            {"garbage_rate": 1.0},
            {"gateway_rate": 1.0},
            {"throttle_rate": 1.0, "retry_after_s": 0},
            {"hang_rate": 1.0},
            {"wrong_credentials_for_s": 60.0},
        ):
            sim.faults.clear()
            sim.faults.update(**faults)
            try:
                await client.check(codes[0])
            except MinistryError as err:
                errors.append(err)
            outcome = await client.check_many(codes[:5])
            errors.extend(outcome.failed.values())
            if faults.get("hang_rate"):
                try:  # cut short by the caller's deadline rather than the attempt's time-out
                    await client.check(codes[0], timeout_s=0.1)
                except MinistryError as err:
                    errors.append(err)
        sim.faults.clear()
        try:
            await client.check("ZZZZZZZZZZ")
        except MinistryError as err:
            errors.append(err)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nowhere = MinistrySettings(
        f"http://127.0.0.1:{port}/", LIVE_USER, LIVE_PASSWORD, max_attempts=1
    )
    async with MinistryClient(nowhere) as client:
        try:
            await client.check(codes[0])
        except MinistryError as err:
            errors.append(err)

    assert len(errors) >= 8
    # Untruncated tracebacks with every frame's locals: the worst a log setup can do.
    untruncated = ExceptionDictTransformer(locals_max_length=10**6, locals_max_string=10**6)
    rendered: list[str] = []
    for failure in errors:
        # What a depot does with a failure: log it with its traceback and chain. Done
        # before this frame holds any secret: its locals are in those tracebacks too.
        depot_log.exception("ministry failure", exc_info=failure)
        exc_info = (type(failure), failure, failure.__traceback__)
        rendered.append(json.dumps(untruncated(exc_info), default=str))
    for secret in secrets():
        assert not [text for text in rendered if secret in text]
    for failure in errors:
        cause = failure.__cause__
        for text in (str(failure), repr(failure), str(cause), repr(cause)):
            for secret in secrets():
                assert secret not in text

    logged = out.getvalue()
    lines = [json.loads(line) for line in logged.splitlines()]
    assert any("exception" in line for line in lines)  # tracebacks were rendered
    assert any(line.get("event") == "ministry refused our credentials" for line in lines)
    for secret in secrets():
        assert secret not in logged

    # The client's own lines do not carry the codes asked either (personal data).
    own = [line for line in lines if line.get("logger") == "hesgate.ministry"]
    assert own
    own_text = json.dumps(own)
    for code in codes:
        assert code not in own_text
