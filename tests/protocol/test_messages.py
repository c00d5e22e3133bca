"""Every validator-depot message: round trips, wire form, version and limits."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import math
import types
import typing
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import messages
from protocol.codec import MessageError, decode, encode
from protocol.credentials import ReadMethod
from protocol.messages import (
    MAX_BATCH_TAPS,
    PROTOCOL_VERSION,
    Behaviour,
    CheckAnswer,
    CheckOutcome,
    CheckRequest,
    DeltaPage,
    GroupRule,
    Heartbeat,
    HeartbeatAnswer,
    ListChange,
    Policy,
    Signed,
    TapAck,
    TapBatch,
    TapRecord,
    TimeWindow,
)
from protocol.reasons import DecidedBy, Decision, Reason
from protocol.risk import Groups, HealthStatus
from protocol.schema import COMPACT, Length, Pattern, Range

#: Lists and binaries in generated messages stay small so the tests stay fast;
#: the limits themselves are tested with explicit sizes.
SMALL = 6
SMALL_BYTES = 96

MESSAGE_CLASSES: list[type[Any]] = sorted(
    (
        cls
        for _, cls in inspect.getmembers(messages, inspect.isclass)
        if dataclasses.is_dataclass(cls) and cls.__module__ == messages.__name__
    ),
    key=lambda cls: cls.__name__,
)
TOP_LEVEL = [cls for cls in MESSAGE_CLASSES if not getattr(cls, COMPACT, False)]
COMPACT_CLASSES = [cls for cls in MESSAGE_CLASSES if getattr(cls, COMPACT, False)]


def strategy_for(hint: object) -> st.SearchStrategy[Any]:
    """Valid values of one annotated field type, boundaries included."""
    meta: tuple[object, ...] = ()
    if typing.get_origin(hint) is typing.Annotated:
        meta = hint.__metadata__  # type: ignore[attr-defined]
        hint = typing.get_args(hint)[0]
    bounds = next((m for m in meta if isinstance(m, Range)), None)
    length = next((m for m in meta if isinstance(m, Length)), None)
    pattern = next((m for m in meta if isinstance(m, Pattern)), None)
    origin = typing.get_origin(hint)
    if origin is types.UnionType or origin is typing.Union:
        (inner,) = (arg for arg in typing.get_args(hint) if arg is not type(None))
        return st.none() | strategy_for(inner)
    if origin is list:
        assert length is not None
        (item,) = typing.get_args(hint)
        return st.lists(strategy_for(item), min_size=length.low, max_size=min(length.high, SMALL))
    assert isinstance(hint, type)
    if issubclass(hint, enum.IntFlag):
        mask = 0
        for member in hint.__members__.values():
            mask |= member.value
        return st.integers(0, mask).filter(lambda v: not v & ~mask).map(hint)
    if issubclass(hint, enum.Enum):
        return st.sampled_from(list(hint))
    if hint is bool:
        return st.booleans()
    if hint is int:
        assert bounds is not None
        return st.integers(int(bounds.low), int(bounds.high))
    if hint is float:
        assert bounds is not None
        return st.floats(bounds.low, bounds.high, allow_nan=False, allow_infinity=False)
    if hint is str:
        assert length is not None
        if pattern is not None:
            return st.from_regex(pattern.regex, fullmatch=True).filter(
                lambda s: length.low <= len(s) <= length.high
            )
        return st.text(min_size=length.low, max_size=length.high)
    if hint is bytes:
        assert length is not None
        return st.binary(min_size=length.low, max_size=min(length.high, SMALL_BYTES))
    if dataclasses.is_dataclass(hint):
        return message_strategy(hint)
    raise AssertionError(f"no strategy for {hint!r}")


def message_strategy(cls: type[Any]) -> st.SearchStrategy[Any]:
    """Valid instances of a message class."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return st.builds(cls, *(strategy_for(hints[f.name]) for f in dataclasses.fields(cls)))


def tap(seq: int = 1, **changes: Any) -> TapRecord:
    """A plausible tap record."""
    record = TapRecord(
        seq=seq,
        time_ms=1_778_000_000_000 + seq,
        method=ReadMethod.QR,
        key=bytes(range(8)),
        decision=Decision.ALLOW,
        reason=Reason.OK,
        decided_by=DecidedBy.LOCAL_LIST,
        list_version=42,
        latency_us=1800,
        vehicle="34 HO 1234",
        route="500T",
        trip="T-0815",
    )
    return dataclasses.replace(record, **changes)


def test_every_message_class_is_covered() -> None:
    names = {cls.__name__ for cls in MESSAGE_CLASSES}
    assert {"TapBatch", "TapAck", "DeltaPage", "Policy", "CheckRequest", "CheckAnswer"} <= names
    assert {"Heartbeat", "HeartbeatAnswer", "Signed", "TapRecord", "ListChange"} <= names


@pytest.mark.parametrize("cls", TOP_LEVEL, ids=lambda cls: cls.__name__)
def test_every_top_level_message_carries_the_version(cls: type[Any]) -> None:
    assert dataclasses.fields(cls)[0].name == "v"


@pytest.mark.parametrize("cls", MESSAGE_CLASSES, ids=lambda cls: cls.__name__)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip(cls: type[Any], data: st.DataObject) -> None:
    message = data.draw(message_strategy(cls))
    decoded = decode(cls, encode(message))
    assert decoded == message
    assert type(decoded) is cls


@pytest.mark.parametrize("cls", TOP_LEVEL, ids=lambda cls: cls.__name__)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_top_level_messages_are_maps_keyed_by_field_name(
    cls: type[Any], data: st.DataObject
) -> None:
    message = data.draw(message_strategy(cls))
    wire = msgpack.unpackb(encode(message))
    assert list(wire) == [f.name for f in dataclasses.fields(cls)]


@pytest.mark.parametrize("cls", TOP_LEVEL, ids=lambda cls: cls.__name__)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_another_protocol_version_is_refused(cls: type[Any], data: st.DataObject) -> None:
    wire = msgpack.unpackb(encode(data.draw(message_strategy(cls))))
    wire["v"] = PROTOCOL_VERSION + 1
    with pytest.raises(MessageError) as caught:
        decode(cls, msgpack.packb(wire))
    assert caught.value.path == "v"


def test_decoded_enums_are_the_enum_members() -> None:
    batch = decode(TapBatch, encode(TapBatch(PROTOCOL_VERSION, "bus-7", [tap()])))
    record = batch.taps[0]
    assert record.method is ReadMethod.QR
    assert record.decision is Decision.ALLOW
    assert record.reason is Reason.OK
    assert record.decided_by is DecidedBy.LOCAL_LIST


def test_a_tap_record_is_an_array_in_field_order() -> None:
    record = tap(seq=9, lat=41.01, lon=28.97)
    wire = msgpack.unpackb(encode(TapBatch(PROTOCOL_VERSION, "bus-7", [record])))
    assert wire["taps"] == [
        [
            9,
            1_778_000_000_009,
            int(ReadMethod.QR),
            bytes(range(8)),
            int(Decision.ALLOW),
            int(Reason.OK),
            int(DecidedBy.LOCAL_LIST),
            42,
            1800,
            "34 HO 1234",
            "500T",
            "T-0815",
            41.01,
            28.97,
        ]
    ]


def test_a_tap_without_position_may_leave_the_trailing_fields_off() -> None:
    wire = {"v": 1, "device": "bus-7", "taps": [msgpack.unpackb(encode(tap()))[:12]]}
    batch = decode(TapBatch, msgpack.packb(wire))
    assert batch.taps == [tap()]
    assert batch.taps[0].lat is None
    assert batch.taps[0].lon is None


def test_a_tap_with_latitude_only_may_leave_the_longitude_off() -> None:
    wire = {"v": 1, "device": "bus-7", "taps": [[*msgpack.unpackb(encode(tap()))[:12], 41.0]]}
    assert decode(TapBatch, msgpack.packb(wire)).taps[0] == tap(lat=41.0)


def test_an_unreadable_frame_has_no_method_and_no_key() -> None:
    record = tap(
        method=None,
        key=None,
        decision=Decision.DENY,
        reason=Reason.UNREADABLE,
        decided_by=DecidedBy.NONE,
    )
    assert decode(TapBatch, encode(TapBatch(1, "bus-7", [record]))).taps == [record]


def test_a_full_batch_round_trips_and_one_more_tap_is_refused() -> None:
    taps = [tap(seq) for seq in range(1, MAX_BATCH_TAPS + 1)]
    assert decode(TapBatch, encode(TapBatch(1, "bus-7", taps))).taps == taps
    with pytest.raises(MessageError, match="taps"):
        encode(TapBatch(1, "bus-7", [*taps, tap(MAX_BATCH_TAPS + 1)]))


def test_a_policy_round_trips_with_nested_rules() -> None:
    policy = Policy(
        v=1,
        version=3,
        issued_ms=1_778_000_000_000,
        timezone="Europe/Istanbul",
        rules=[
            GroupRule(
                Groups.AGE_65_PLUS,
                [TimeWindow([0, 1, 2, 3, 4], 600, 960), TimeWindow([5, 6], 0, 1440)],
            ),
            GroupRule(Groups.UNDER_20, []),
        ],
        offline_unknown=Behaviour.ALLOW_FLAGGED,
        stale_list=Behaviour.DENY,
        max_list_age_s=3600,
    )
    decoded = decode(Policy, encode(policy))
    assert decoded == policy
    assert decoded.offline_unknown is Behaviour.ALLOW_FLAGGED
    assert msgpack.unpackb(encode(policy))["rules"][0] == [
        1,
        [[[0, 1, 2, 3, 4], 600, 960], [[5, 6], 0, 1440]],
    ]


def test_a_delta_page_carries_removals_and_group_flags() -> None:
    page = DeltaPage(
        v=1,
        since=10,
        until=12,
        changes=[
            ListChange(11, b"\x01" * 8, False, HealthStatus.RISKY, 20_000, "123", Groups(3)),
            ListChange(12, b"\x02" * 8, True, HealthStatus.RISKLESS, None, None, Groups.NONE),
        ],
        more=False,
    )
    decoded = decode(DeltaPage, encode(page))
    assert decoded == page
    assert decoded.changes[0].groups == Groups.AGE_65_PLUS | Groups.UNDER_20


def test_a_signed_envelope_carries_an_encoded_body() -> None:
    body = encode(HeartbeatAnswer(1, 1_778_000_000_000, 5, 2, 4))
    envelope = Signed(1, "depot-2026", body, bytes(64))
    assert decode(HeartbeatAnswer, decode(Signed, encode(envelope)).body) == decode(
        HeartbeatAnswer, body
    )


def test_check_request_and_answer_round_trip() -> None:
    request = CheckRequest(1, ReadMethod.KEYPAD, bytes(8), "A1B2C3D4E5", "042")
    assert decode(CheckRequest, encode(request)) == request
    answer = CheckAnswer(1, CheckOutcome.UNAVAILABLE, None, None, None, Groups.NONE, 77)
    decoded = decode(CheckAnswer, encode(answer))
    assert decoded == answer
    assert decoded.outcome is CheckOutcome.UNAVAILABLE


def test_a_heartbeat_round_trips() -> None:
    beat = Heartbeat(
        v=1,
        device="bus-7",
        time_ms=1_778_000_000_000,
        software="hesgate 0.1.0",
        last_seq=120,
        backlog=3,
        oldest_unsent_ms=1_777_999_990_000,
        list_version=42,
        list_age_s=None,
        policy_version=2,
        online_failures=0,
    )
    assert decode(Heartbeat, encode(beat)) == beat
    assert decode(TapAck, encode(TapAck(1, 120, 100, 20))) == TapAck(1, 120, 100, 20)


def test_an_int_position_decodes_as_a_float() -> None:
    wire = {"v": 1, "device": "bus-7", "taps": [[*msgpack.unpackb(encode(tap()))[:12], 41, 29]]}
    record = decode(TapBatch, msgpack.packb(wire)).taps[0]
    assert record.lat == 41.0
    assert type(record.lat) is float
    assert record.lon is not None
    assert math.isclose(record.lon, 29.0)
