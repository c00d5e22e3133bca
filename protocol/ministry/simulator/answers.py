"""The simulated service's bodies, written the way the real one writes them.

Results with masked identity numbers and names (names sometimes with a
trailing space, as the real service sends them), bulk maps, and errors in
the JHipster ``BadRequestAlertException`` shape. The error keys
``toomanyhescodes`` and ``invalidrequest`` are this simulator's own: what
the real service answers in those cases is not known.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from protocol.ministry import wire
from protocol.ministry.simulator.population import PopulationRecord

TOO_MANY_KEY: Final = "toomanyhescodes"
INVALID_REQUEST_KEY: Final = "invalidrequest"
_TITLES: Final[Mapping[str, str]] = MappingProxyType(
    {
        wire.NOT_FOUND_KEY: "HES kodu bulunamadı",
        wire.EXPIRED_KEY: "HES kodunun süresi dolmuş",
        TOO_MANY_KEY: "En fazla 500 HES kodu sorgulanabilir",
        INVALID_REQUEST_KEY: "Geçersiz istek",
    }
)
GATEWAY_PAGE: Final = (
    "<html><head><title>502 Bad Gateway</title></head><body>"
    "<center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)
MAINTENANCE_PAGE: Final = (
    "<!DOCTYPE html><html><head><title>e-Devlet Kapısı</title></head><body>"
    "<h1>Sistem bakımdadır</h1><p>Lütfen daha sonra tekrar deneyiniz.</p></body></html>"
)


def mask_name(name: str) -> str:
    """``DENİZ`` -> ``DE***``: the first two letters of each word stay."""
    return " ".join(word[:2] + "*" * max(len(word) - 2, 0) for word in name.split(" "))


def mask_tckn(number: str) -> str:
    """``12345678950`` -> ``********950``."""
    return "*" * 8 + number[-3:]


def _trailing_space(code: str) -> str:
    # About one code in four: the real service pads some names.
    return " " if int(code[-1], 36) % 4 == 0 else ""


def result(record: PopulationRecord, *, plus: bool) -> dict[str, Any]:
    """The 200 body for one code."""
    body: dict[str, Any] = {
        wire.STATUS: record.status.name,
        wire.EXPIRATION: wire.format_time(record.expires_at),
        wire.MASKED_TCKN: mask_tckn(record.tckn),
        wire.MASKED_FIRST_NAME: mask_name(record.first_name),
        wire.MASKED_LAST_NAME: mask_name(record.last_name) + _trailing_space(record.hes_code),
    }
    if plus:
        body[wire.IS_VACCINATED] = record.is_vaccinated
        body[wire.IS_IMMUNE] = record.is_immune
        body[wire.LAST_NEGATIVE_TEST] = (
            wire.format_time(record.last_negative_test) if record.last_negative_test else None
        )
        body[wire.IS_TEST_DATA_SHARED] = record.is_test_data_shared
    return body


def error_key_for(record: PopulationRecord | None, now: dt.datetime) -> str | None:
    """The error key a code gets at ``now``, or ``None`` when it has a result."""
    if record is None:
        return wire.NOT_FOUND_KEY
    if record.expired(now):
        return wire.EXPIRED_KEY
    return None


def jhipster_error(
    error_key: str, *, status: int = 400, message: str | None = None
) -> dict[str, Any]:
    """A JHipster ``BadRequestAlertException`` body."""
    return {
        "entityName": "hes",
        wire.ERROR_KEY: error_key,
        "type": "https://www.jhipster.tech/problem/problem-with-message",
        "title": _TITLES.get(error_key, message or error_key),
        "status": status,
        "message": f"error.{error_key}",
        "params": "hes",
    }


def problem(status: int, title: str, detail: str) -> dict[str, Any]:
    """A JHipster problem body without an error key (auth, throttling, outages)."""
    return {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "message": f"error.http.{status}",
    }
