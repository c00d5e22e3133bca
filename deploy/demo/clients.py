"""Small HTTP clients for what the demo asks of the running programs.

The Ministry simulator's admin API (population, faults, scheduled changes),
the depot's operator API (fleet, trip export) and each validator's screen
(status, keypad), all over one :class:`aiohttp.ClientSession`. Every failure
is a :class:`ServiceError` naming the call.
"""

from __future__ import annotations

import json
from typing import Any, Final

import aiohttp

#: No call the demo makes should take longer than this.
CALL_TIMEOUT_S: Final = 15.0
#: An outage as the simulator injects it: every call answers 503.
OUTAGE_FAULTS: Final = {"unavailable_rate": 1.0}


class ServiceError(RuntimeError):
    """An HTTP call to one of the demo's programs failed; the message names it and why."""


async def _json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: object = None,
    ok: tuple[int, ...] = (200,),
    timeout_s: float = CALL_TIMEOUT_S,
) -> Any:
    try:
        async with session.request(
            method,
            url,
            headers=headers,
            json=body,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            text = await response.text()
            if response.status not in ok:
                raise ServiceError(f"{method} {url}: HTTP {response.status}: {text[:200]}")
    except (aiohttp.ClientError, TimeoutError) as err:
        raise ServiceError(f"{method} {url}: {type(err).__name__}: {err}") from err
    try:
        return json.loads(text) if text else None
    except ValueError as err:
        raise ServiceError(f"{method} {url}: the answer is not JSON") from err


async def _text(
    session: aiohttp.ClientSession,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> str:
    try:
        async with session.get(
            url,
            headers=headers,
            params=params,
            timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT_S),
        ) as response:
            text = await response.text()
            if response.status != 200:
                raise ServiceError(f"GET {url}: HTTP {response.status}: {text[:200]}")
            return text
    except (aiohttp.ClientError, TimeoutError) as err:
        raise ServiceError(f"GET {url}: {type(err).__name__}: {err}") from err


class MinistryAdmin:
    """The Ministry simulator's admin API (docs/ministry.md, "The simulator")."""

    def __init__(self, session: aiohttp.ClientSession, root: str, token: str) -> None:
        self._session = session
        self.root = root.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}

    async def healthz(self) -> dict[str, Any]:
        """``GET /healthz``."""
        body: dict[str, Any] = await _json(self._session, "GET", self.root + "/healthz")
        return body

    async def population(self) -> dict[str, Any]:
        """Every record and the pending scheduled changes (``GET /admin/population``)."""
        body: dict[str, Any] = await _json(
            self._session, "GET", self.root + "/admin/population", headers=self._headers
        )
        return body

    async def registrations_csv(self) -> str:
        """The population as the depot's registration file."""
        return await _text(
            self._session,
            self.root + "/admin/population",
            headers=self._headers,
            params={"format": "registrations"},
        )

    async def outage(self) -> None:
        """Start an outage: every call gets 503 until :meth:`recover`."""
        await _json(
            self._session,
            "PUT",
            self.root + "/admin/faults",
            headers=self._headers,
            body=OUTAGE_FAULTS,
        )

    async def recover(self) -> None:
        """End every injected fault."""
        await _json(self._session, "DELETE", self.root + "/admin/faults", headers=self._headers)

    async def schedule(self, hes_code: str, in_s: float, status: str) -> None:
        """Have ``hes_code`` turn ``status`` (``RISKY``/``RISKLESS``) ``in_s`` seconds from now."""
        await _json(
            self._session,
            "POST",
            self.root + "/admin/schedule",
            headers=self._headers,
            body={"hes_code": hes_code, "in_s": in_s, "status": status},
            ok=(201,),
        )


class DepotOperator:
    """The depot's operator API with an ``admin`` token (fleet and exports)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str) -> None:
        self._session = session
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}

    async def healthz(self) -> dict[str, Any]:
        """``GET /healthz`` (200 or 503, both answers)."""
        body: dict[str, Any] = await _json(
            self._session, "GET", self.base_url + "/healthz", ok=(200, 503)
        )
        return body

    async def fleet(self) -> dict[str, Any]:
        """``GET /v1/fleet``."""
        body: dict[str, Any] = await _json(
            self._session, "GET", self.base_url + "/v1/fleet", headers=self._headers
        )
        return body

    async def trips(self, since: str) -> list[dict[str, Any]]:
        """Every tap record from ``since`` (ISO date or time) on, as the auditor export gives it."""
        url = self.base_url + "/v1/exports/trips"
        text = await _text(
            self._session, url, headers=self._headers, params={"from": since, "format": "jsonl"}
        )
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as err:
            raise ServiceError(f"GET {url}: a line is not JSON") from err


class Screen:
    """One validator's screen app: what the kiosk page uses."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self.base_url = base_url.rstrip("/")

    async def status(self) -> dict[str, Any]:
        """``GET /api/status``."""
        body: dict[str, Any] = await _json(self._session, "GET", self.base_url + "/api/status")
        return body

    async def keypad(self, code: str, tckn_last3: str) -> dict[str, Any]:
        """``POST /api/keypad`` as the page posts it; the answer shown."""
        body: dict[str, Any] = await _json(
            self._session,
            "POST",
            self.base_url + "/api/keypad",
            body={"code": code, "tckn_last3": tckn_last3},
        )
        return body
