"""The Ministry's answers read into typed results, strictly.

Anything that is not the documented shape becomes a
:class:`~protocol.ministry.errors.MinistryProtocolError`: a field missing or
of the wrong type, a status other than RISKY or RISKLESS, a time that is not
a time. A result is built only from an answer that says exactly what it means.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from protocol import hescode
from protocol.ministry import wire
from protocol.ministry.errors import (
    HesCodeAnswer,
    HesCodeExpired,
    HesCodeNotFound,
    HesCodeRejected,
    MinistryError,
    MinistryProtocolError,
)
from protocol.risk import HealthStatus
from protocol.tckn import last3_from_masked

_STATUSES: Final[Mapping[str, HealthStatus]] = MappingProxyType(
    {wire.RISKY: HealthStatus.RISKY, wire.RISKLESS: HealthStatus.RISKLESS}
)


@dataclass(frozen=True, slots=True)
class HesResult:
    """What the Ministry says about one HES code.

    ``expires_at`` is an aware UTC datetime. ``tckn_last3`` is ``None`` when
    the masked number does not have the documented shape (there is then
    nothing to match against, which is not a mismatch). Names are the masked
    names, trimmed. The last four fields come only from the ``-plus``
    endpoints and are ``None`` when unknown.
    """

    hes_code: str
    status: HealthStatus
    expires_at: dt.datetime
    tckn_last3: str | None
    first_name: str
    last_name: str
    is_vaccinated: bool | None = None
    is_immune: bool | None = None
    last_negative_test: dt.datetime | None = None
    is_test_data_shared: bool | None = None


@dataclass(frozen=True, slots=True)
class BulkOutcome:
    """One answer per distinct code asked in :meth:`MinistryClient.check_many`.

    Every normalised code asked is in exactly one of ``results``,
    ``not_found``, ``expired`` and ``failed``. A code in ``failed`` has no
    answer (its chunk failed after retries, or the service refused it with
    an unknown error key): it must never be taken as riskless.
    """

    results: dict[str, HesResult] = field(default_factory=dict)
    not_found: frozenset[str] = frozenset()
    expired: frozenset[str] = frozenset()
    failed: dict[str, MinistryError] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Whether every code got an answer (no code is in ``failed``)."""
        return not self.failed


def decode_json(body: bytes, what: str) -> Any:
    """Parse a JSON body, or raise a retryable protocol error naming ``what``."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MinistryProtocolError(f"{what} is not JSON: {err}") from err


def parse_result(hes_code: str, raw: Any, *, plus: bool) -> HesResult:
    """Read one result object (a single answer, or one entry of ``success_map``)."""
    if not isinstance(raw, Mapping):
        raise MinistryProtocolError(f"a result must be a JSON object, got {type(raw).__name__}")
    status_text = _required_str(raw, wire.STATUS).strip().upper()
    status = _STATUSES.get(status_text)
    if status is None:
        raise MinistryProtocolError(f"unknown {wire.STATUS} {status_text[:32]!r}")
    expires_at = _required_time(raw, wire.EXPIRATION)
    masked = raw.get(wire.MASKED_TCKN)
    if masked is not None and not isinstance(masked, str):
        raise MinistryProtocolError(f"{wire.MASKED_TCKN} must be a string")
    result = HesResult(
        hes_code=hes_code,
        status=status,
        expires_at=expires_at,
        tckn_last3=last3_from_masked(masked) if masked is not None else None,
        first_name=_name(raw, wire.MASKED_FIRST_NAME),
        last_name=_name(raw, wire.MASKED_LAST_NAME),
    )
    if not plus:
        return result
    # Missing plus fields read as unknown (a serializer may drop nulls); wrong types do not.
    return dataclasses.replace(
        result,
        is_vaccinated=_optional_bool(raw, wire.IS_VACCINATED),
        is_immune=_optional_bool(raw, wire.IS_IMMUNE),
        last_negative_test=_optional_time(raw, wire.LAST_NEGATIVE_TEST),
        is_test_data_shared=_optional_bool(raw, wire.IS_TEST_DATA_SHARED),
    )


def answer_for_key(hes_code: str, error_key: str) -> HesCodeAnswer:
    """The typed answer for an ``errorKey`` about one code."""
    if error_key == wire.NOT_FOUND_KEY:
        return HesCodeNotFound(hes_code, error_key)
    if error_key == wire.EXPIRED_KEY:
        return HesCodeExpired(hes_code, error_key)
    return HesCodeRejected(hes_code, error_key)


def error_key_of(body: bytes) -> str | None:
    """The ``errorKey`` of a JHipster error body, or ``None`` when it has none."""
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(raw, Mapping):
        return None
    key = raw.get(wire.ERROR_KEY)
    return key.strip() if isinstance(key, str) and key.strip() else None


@dataclass(frozen=True, slots=True)
class BulkAnswer:
    """A bulk answer read for the codes that were asked."""

    results: dict[str, HesResult]
    answers: dict[str, HesCodeAnswer]
    failed: dict[str, MinistryError]


def parse_bulk(asked: list[str], raw: Any, *, plus: bool) -> BulkAnswer:
    """Read ``{"success_map": ..., "unsuccess_map": ...}`` for the codes ``asked``.

    The whole answer is refused when it is not that shape. A code the answer
    does not mention, mentions twice, or answers with a malformed result
    goes to ``failed``; codes nobody asked about are ignored.
    """
    if not isinstance(raw, Mapping):
        raise MinistryProtocolError(
            f"a bulk answer must be a JSON object, got {type(raw).__name__}"
        )
    if wire.SUCCESS_MAP not in raw and wire.UNSUCCESS_MAP not in raw:
        raise MinistryProtocolError(
            f"a bulk answer needs {wire.SUCCESS_MAP} or {wire.UNSUCCESS_MAP}"
        )
    success = _code_map(raw, wire.SUCCESS_MAP)
    unsuccess = _code_map(raw, wire.UNSUCCESS_MAP)
    results: dict[str, HesResult] = {}
    answers: dict[str, HesCodeAnswer] = {}
    failed: dict[str, MinistryError] = {}
    for code in asked:
        in_success, in_unsuccess = code in success, code in unsuccess
        if in_success and in_unsuccess:
            failed[code] = MinistryProtocolError("the code is in both bulk maps")
        elif in_success:
            try:
                results[code] = parse_result(code, success[code], plus=plus)
            except MinistryProtocolError as err:
                failed[code] = err
        elif in_unsuccess:
            key = unsuccess[code]
            if isinstance(key, str) and key.strip():
                answers[code] = answer_for_key(code, key.strip())
            else:
                failed[code] = MinistryProtocolError("an unsuccess_map value must be an error key")
        else:
            failed[code] = MinistryProtocolError("the bulk answer does not mention the code")
    return BulkAnswer(results, answers, failed)


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def _code_map(raw: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MinistryProtocolError(f"{name} must be a JSON object")
    return {hescode.normalize(str(code)): item for code, item in value.items()}


def _required_str(raw: Mapping[str, Any], name: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str):
        raise MinistryProtocolError(f"{name} is missing or not a string")
    return value


def _name(raw: Mapping[str, Any], name: str) -> str:
    value = raw.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MinistryProtocolError(f"{name} must be a string")
    return value.strip()


def _optional_bool(raw: Mapping[str, Any], name: str) -> bool | None:
    value = raw.get(name)
    if value is None or isinstance(value, bool):
        return value
    raise MinistryProtocolError(f"{name} must be true, false or null")


def _optional_time(raw: Mapping[str, Any], name: str) -> dt.datetime | None:
    return None if raw.get(name) is None else _required_time(raw, name)


def _required_time(raw: Mapping[str, Any], name: str) -> dt.datetime:
    value = raw.get(name)
    if not isinstance(value, str):
        raise MinistryProtocolError(f"{name} is missing or not a string")
    try:
        return wire.parse_time(value)
    except ValueError as err:
        raise MinistryProtocolError(f"{name} is not an ISO 8601 time") from err
