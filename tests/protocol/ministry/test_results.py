"""Reading the Ministry's answers: the documented shape gives a result, anything else an error."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from protocol.ministry import (
    HesCodeExpired,
    HesCodeNotFound,
    HesCodeRejected,
    MinistryAuthError,
    MinistryProtocolError,
    MinistrySettings,
    MinistryThrottled,
)
from protocol.ministry.results import error_key_of, parse_bulk, parse_result, parse_retry_after
from protocol.ministry.wire import LIVE_BASE_URL, TEST_BASE_URL, format_time, parse_time
from protocol.risk import HealthStatus

# The example from the public client code (ministry-g2g.md), names padded as they come.
DOC_EXAMPLE: dict[str, Any] = {
    "current_health_status": "RISKLESS",
    "expiration_date": "2021-12-30T13:00:00.000Z",
    "masked_identity_number": "********792",
    "masked_firstname": "DE****",
    "masked_lastname": "DE**** ",
}


def test_documented_example_reads_into_a_typed_result() -> None:
    result = parse_result("R7G6915415", DOC_EXAMPLE, plus=False)
    assert result.hes_code == "R7G6915415"
    assert result.status is HealthStatus.RISKLESS
    assert result.expires_at == dt.datetime(2021, 12, 30, 13, 0, tzinfo=dt.UTC)
    assert result.expires_at.utcoffset() == dt.timedelta(0)
    assert result.tckn_last3 == "792"
    assert result.first_name == "DE****"
    assert result.last_name == "DE****"
    assert result.is_vaccinated is None
    assert result.last_negative_test is None


def test_risky_is_risky() -> None:
    result = parse_result(
        "R7G6915415", {**DOC_EXAMPLE, "current_health_status": "RISKY"}, plus=False
    )
    assert result.status is HealthStatus.RISKY


@pytest.mark.parametrize("status", ["UNKNOWN", "", "riskless-ish", "HEALTHY", None, 0, True])
def test_an_unknown_status_is_never_riskless(status: object) -> None:
    with pytest.raises(MinistryProtocolError):
        parse_result("R7G6915415", {**DOC_EXAMPLE, "current_health_status": status}, plus=False)


def test_missing_status_is_a_protocol_error() -> None:
    body = {k: v for k, v in DOC_EXAMPLE.items() if k != "current_health_status"}
    with pytest.raises(MinistryProtocolError, match="current_health_status"):
        parse_result("R7G6915415", body, plus=False)


@pytest.mark.parametrize("expiry", [None, "", "next week", 1640869200, "2021-13-45T00:00:00Z"])
def test_a_bad_expiry_is_a_protocol_error(expiry: object) -> None:
    with pytest.raises(MinistryProtocolError, match="expiration_date"):
        parse_result("R7G6915415", {**DOC_EXAMPLE, "expiration_date": expiry}, plus=False)


def test_expiry_without_offset_is_utc_and_offsets_are_converted() -> None:
    naive = parse_result("A", {**DOC_EXAMPLE, "expiration_date": "2021-12-30T13:00:00"}, plus=False)
    assert naive.expires_at == dt.datetime(2021, 12, 30, 13, 0, tzinfo=dt.UTC)
    istanbul = parse_result(
        "A", {**DOC_EXAMPLE, "expiration_date": "2021-12-30T16:00:00+03:00"}, plus=False
    )
    assert istanbul.expires_at == dt.datetime(2021, 12, 30, 13, 0, tzinfo=dt.UTC)
    assert istanbul.expires_at.tzinfo == dt.UTC


@pytest.mark.parametrize("masked", ["792", "*******7922", "********79X", ""])
def test_an_odd_masked_number_gives_no_digits_rather_than_wrong_ones(masked: str) -> None:
    result = parse_result("A", {**DOC_EXAMPLE, "masked_identity_number": masked}, plus=False)
    assert result.tckn_last3 is None


def test_a_masked_number_that_is_not_text_is_a_protocol_error() -> None:
    with pytest.raises(MinistryProtocolError):
        parse_result("A", {**DOC_EXAMPLE, "masked_identity_number": 792}, plus=False)


def test_names_that_are_not_text_are_a_protocol_error() -> None:
    with pytest.raises(MinistryProtocolError, match="masked_firstname"):
        parse_result("A", {**DOC_EXAMPLE, "masked_firstname": ["DE"]}, plus=False)


def test_a_result_that_is_not_an_object_is_a_protocol_error() -> None:
    with pytest.raises(MinistryProtocolError):
        parse_result("A", ["RISKLESS"], plus=False)


def test_plus_fields() -> None:
    body = {
        **DOC_EXAMPLE,
        "is_vaccinated": True,
        "is_immune": None,
        "last_negative_test_date": "2021-12-01T08:30:00.000Z",
        "is_test_data_shared": False,
    }
    result = parse_result("A", body, plus=True)
    assert result.is_vaccinated is True
    assert result.is_immune is None
    assert result.last_negative_test == dt.datetime(2021, 12, 1, 8, 30, tzinfo=dt.UTC)
    assert result.is_test_data_shared is False


def test_plus_fields_left_out_are_unknown_but_wrong_types_are_refused() -> None:
    assert parse_result("A", DOC_EXAMPLE, plus=True).is_vaccinated is None
    with pytest.raises(MinistryProtocolError, match="is_vaccinated"):
        parse_result("A", {**DOC_EXAMPLE, "is_vaccinated": "yes"}, plus=True)
    with pytest.raises(MinistryProtocolError, match="last_negative_test_date"):
        parse_result("A", {**DOC_EXAMPLE, "last_negative_test_date": "dün"}, plus=True)


def test_bulk_answer_sorts_every_asked_code_into_one_place() -> None:
    raw = {
        "success_map": {"AAAAAAAAAA": DOC_EXAMPLE, "ZZZZZZZZZZ": DOC_EXAMPLE},
        "unsuccess_map": {
            "BBBBBBBBBB": "hescodenotfound",
            "CCCCCCCCCC": "hescodehasbeenexpired",
            "DDDDDDDDDD": "somethingnew",
            "EEEEEEEEEE": 7,
        },
    }
    asked = ["AAAAAAAAAA", "BBBBBBBBBB", "CCCCCCCCCC", "DDDDDDDDDD", "EEEEEEEEEE", "FFFFFFFFFF"]
    answer = parse_bulk(asked, raw, plus=False)
    assert set(answer.results) == {"AAAAAAAAAA"}  # ZZZ... was not asked
    assert isinstance(answer.answers["BBBBBBBBBB"], HesCodeNotFound)
    assert isinstance(answer.answers["CCCCCCCCCC"], HesCodeExpired)
    rejected = answer.answers["DDDDDDDDDD"]
    assert isinstance(rejected, HesCodeRejected)
    assert rejected.error_key == "somethingnew"
    assert set(answer.failed) == {"EEEEEEEEEE", "FFFFFFFFFF"}
    assert all(isinstance(err, MinistryProtocolError) for err in answer.failed.values())


def test_bulk_code_in_both_maps_or_malformed_fails_only_that_code() -> None:
    raw = {
        "success_map": {"AAAAAAAAAA": DOC_EXAMPLE, "BBBBBBBBBB": {"current_health_status": "OK"}},
        "unsuccess_map": {"AAAAAAAAAA": "hescodenotfound"},
    }
    answer = parse_bulk(["AAAAAAAAAA", "BBBBBBBBBB"], raw, plus=False)
    assert answer.results == {}
    assert set(answer.failed) == {"AAAAAAAAAA", "BBBBBBBBBB"}


def test_bulk_keys_are_normalised_and_empty_maps_may_be_null() -> None:
    raw = {"success_map": {"aaaa-aaaa-aa": DOC_EXAMPLE}, "unsuccess_map": None}
    answer = parse_bulk(["AAAAAAAAAA"], raw, plus=False)
    assert set(answer.results) == {"AAAAAAAAAA"}


@pytest.mark.parametrize(
    "raw",
    [[], "ok", {"status": 200, "data": {}}, {"success_map": [], "unsuccess_map": {}}],
)
def test_a_bulk_answer_of_the_wrong_shape_is_refused_whole(raw: object) -> None:
    with pytest.raises(MinistryProtocolError):
        parse_bulk(["AAAAAAAAAA"], raw, plus=False)


def test_error_key_of_a_jhipster_body() -> None:
    body = b'{"entityName":"hes","errorKey":"hescodenotfound","status":400}'
    assert error_key_of(body) == "hescodenotfound"
    assert error_key_of(b"<html>400 Bad Request</html>") is None
    assert error_key_of(b'{"title":"Bad Request"}') is None
    assert error_key_of(b"[1,2]") is None


def test_retry_after() -> None:
    now = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("Sun, 01 Mar 2026 09:00:20 GMT", now=now) == 20.0
    assert parse_retry_after("Sun, 01 Mar 2026 08:59:00 GMT", now=now) == 0.0
    assert parse_retry_after("-4") == 0.0
    for useless in (None, "", "soon", "inf", "nan"):
        assert parse_retry_after(useless) is None


def test_wire_times_round_trip_with_milliseconds() -> None:
    moment = dt.datetime(2021, 12, 30, 16, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=3)))
    text = format_time(moment)
    assert text == "2021-12-30T13:00:00.123Z"
    assert parse_time(text) == dt.datetime(2021, 12, 30, 13, 0, 0, 123000, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="naive"):
        format_time(dt.datetime(2021, 1, 1))


def test_settings_never_show_the_password() -> None:
    settings = MinistrySettings(LIVE_BASE_URL, "IBB-G2G-HES", "hunter2-Şifre")
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings)
    assert settings.environment == "live"
    assert MinistrySettings(TEST_BASE_URL, "IBB-TEST", "x").environment == "test"
    assert MinistrySettings("http://127.0.0.1:9/", "U", "x").environment == "custom"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"base_url": "ftp://hesservis.turkiye.gov.tr/"}, "base_url"),
        ({"base_url": "https://user:hunter2@hesservis.turkiye.gov.tr/"}, "credentials"),
        ({"username": ""}, "username"),
        ({"username": "A:B"}, "username"),
        ({"password": ""}, "password"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"concurrency": 0}, "concurrency"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"bulk_chunk_size": 501}, "bulk_chunk_size"),
        ({"breaker_threshold": 0}, "threshold"),
    ],
)
def test_settings_refuse_nonsense_without_echoing_the_password(
    changes: dict[str, Any], message: str
) -> None:
    values: dict[str, Any] = {
        "base_url": LIVE_BASE_URL,
        "username": "IBB-G2G-HES",
        "password": "hunter2",
        **changes,
    }
    with pytest.raises(ValueError, match=message) as caught:
        MinistrySettings(**values)
    assert "hunter2" not in str(caught.value)


def test_failure_messages_say_what_happened() -> None:
    assert "401" in str(MinistryAuthError(401))
    assert MinistryAuthError(403).retryable is False
    throttled = MinistryThrottled(2.0)
    assert throttled.retry_after_s == 2.0
    assert throttled.retryable is True
    assert "retry after 2 s" in str(throttled)
    not_found = HesCodeNotFound("R7G6915415")
    assert not_found.hes_code == "R7G6915415"
    assert "R7G6915415" not in str(not_found)  # codes are personal data: attribute only
