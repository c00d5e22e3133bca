"""The codec: strict decoding of untrusted bytes, one typed error naming the field."""

from __future__ import annotations

import contextlib
import dataclasses
import struct
from typing import Annotated, Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.codec import MessageError, MessageTooLarge, SchemaError, decode, encode
from protocol.messages import (
    MAX_BODY_BYTES,
    PROTOCOL_VERSION,
    Behaviour,
    CheckAnswer,
    DeltaPage,
    ListChange,
    Policy,
    Signed,
    TapAck,
    TapBatch,
)
from protocol.reasons import Reason
from protocol.risk import Groups, HealthStatus
from protocol.schema import Length, Range
from tests.protocol.test_messages import MESSAGE_CLASSES, message_strategy, tap


def wire_batch(*records: list[Any], **fields: Any) -> dict[str, Any]:
    """A TapBatch as plain MessagePack data, with ``records`` as its taps."""
    batch: dict[str, Any] = {"v": 1, "device": "bus-7", "taps": list(records)}
    batch.update(fields)
    return batch


def wire_tap(**changes: Any) -> list[Any]:
    """A valid tap record in wire form (an array), with fields replaced by name."""
    record = tap(**changes)
    return [getattr(record, f.name) for f in dataclasses.fields(record)]


def refusal(cls: type[Any], wire: object) -> MessageError:
    """The error decoding ``wire`` (plain data, packed here) as ``cls``."""
    with pytest.raises(MessageError) as caught:
        decode(cls, msgpack.packb(wire, use_bin_type=True))
    return caught.value


# --- the error -------------------------------------------------------------


def test_the_error_names_the_path_and_the_problem() -> None:
    bad = wire_tap()
    bad[0] = 0
    err = refusal(TapBatch, wire_batch(wire_tap(), wire_tap(), wire_tap(), bad))
    assert err.path == "taps[3].seq"
    assert err.problem == "expected int >= 1, got 0"
    assert str(err) == "taps[3].seq: expected int >= 1, got 0"
    assert isinstance(err, ValueError)


def test_an_error_about_the_whole_body_has_an_empty_path() -> None:
    err = refusal(TapBatch, [1, 2, 3])
    assert err.path == ""
    assert err.problem == "expected map, got array"
    assert str(err) == "expected map, got array"


def test_nested_paths_name_every_level() -> None:
    policy = msgpack.unpackb(encode(_policy()))
    policy["rules"] = [[1, []], [2, [[[0], 0, 60], [[0, 1, 9], 0, 60]]]]
    err = refusal(Policy, policy)
    assert str(err) == "rules[1].windows[1].weekdays[2]: expected int <= 6, got 9"


# --- each kind of field ----------------------------------------------------


@pytest.mark.parametrize(
    ("index", "value", "path", "problem"),
    [
        (0, "1", "taps[0].seq", "expected int, got string"),
        (0, True, "taps[0].seq", "expected int, got bool"),
        (0, 1.0, "taps[0].seq", "expected int, got float"),
        (1, -1, "taps[0].time_ms", "expected int >= 0, got -1"),
        (8, 2**32, "taps[0].latency_us", "expected int <= 4294967295, got 4294967296"),
        (2, 7, "taps[0].method", "expected ReadMethod (1, 2, 3) or nil, got 7"),
        (2, "QR", "taps[0].method", "expected ReadMethod (1, 2, 3) or nil, got string"),
        (3, b"1234567", "taps[0].key", "expected 8 bytes or nil, got 7"),
        (3, "12345678", "taps[0].key", "expected binary or nil, got string"),
        (4, True, "taps[0].decision", "expected Decision (0, 1, 2), got bool"),
        (5, 9, "taps[0].reason", "expected Reason (0, 1, 2, 3, 4, 5, 6, 7, 8), got 9"),
        (9, "x" * 65, "taps[0].vehicle", "expected 0 to 64 characters, got 65"),
        (9, None, "taps[0].vehicle", "expected string, got nil"),
    ],
)
def test_each_bad_tap_field_is_named(index: int, value: Any, path: str, problem: str) -> None:
    record = wire_tap()
    record[index] = value
    err = refusal(TapBatch, wire_batch(record))
    assert (err.path, err.problem) == (path, problem)


def test_bool_is_not_an_int_nor_an_int_a_bool() -> None:
    assert refusal(TapAck, {"v": 1, "ack": False, "stored": 0, "duplicates": 0}).path == "ack"
    page = {"v": 1, "since": 0, "until": 0, "changes": [], "more": 0}
    assert str(refusal(DeltaPage, page)) == "more: expected bool, got int"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinities_are_refused(value: float) -> None:
    err = refusal(TapBatch, wire_batch([*wire_tap()[:12], value]))
    assert err.path == "taps[0].lat"
    assert "finite" in err.problem or "float" in err.problem


def test_a_single_precision_float_is_accepted_and_its_nan_refused() -> None:
    body = msgpack.packb(wire_batch([*wire_tap()[:12], 1.25]))
    # The position is the last value of the body: make it a float32 (0xca).
    assert body[-9] == 0xCB
    single = body[:-9] + b"\xca" + struct.pack(">f", 41.5)
    assert decode(TapBatch, single).taps[0].lat == 41.5
    nan = body[:-9] + b"\xca" + struct.pack(">f", float("nan"))
    with pytest.raises(MessageError, match=r"taps\[0\]\.lat: expected a finite float"):
        decode(TapBatch, nan)


def test_out_of_range_positions_are_refused() -> None:
    err = refusal(TapBatch, wire_batch([*wire_tap()[:12], 41.0, 180.5]))
    assert str(err) == "taps[0].lon: expected float <= 180 or nil, got 180.5"
    assert refusal(TapBatch, wire_batch([*wire_tap()[:12], -90.01])).path == "taps[0].lat"


def test_a_string_field_must_match_its_pattern() -> None:
    err = refusal(TapBatch, wire_batch(wire_tap(), device="bus 7"))
    assert err.path == "device"
    assert "matching" in err.problem
    assert refusal(TapBatch, wire_batch(wire_tap(), device="bus-7\n")).path == "device"
    assert refusal(TapBatch, wire_batch(wire_tap(), device="")).path == "device"


def test_group_flags_must_stay_within_the_defined_bits() -> None:
    change = [5, bytes(8), False, int(HealthStatus.RISKY), None, None, 3]
    page = {"v": 1, "since": 4, "until": 5, "changes": [change], "more": False}
    assert decode(DeltaPage, msgpack.packb(page)).changes[0].groups == Groups(3)
    change[6] = 4
    err = refusal(DeltaPage, page)
    assert str(err) == "changes[0].groups: expected Groups flags within 0x3, got 4"
    change[6] = -1
    assert refusal(DeltaPage, page).path == "changes[0].groups"


def test_a_str_enum_travels_as_its_value() -> None:
    policy = msgpack.unpackb(encode(_policy()))
    assert policy["stale_list"] == "deny"
    policy["stale_list"] = "DENY"
    assert refusal(Policy, policy).path == "stale_list"


def test_an_optional_field_accepts_nil_but_must_be_present() -> None:
    answer = {
        "v": 1,
        "outcome": 1,
        "status": None,
        "expiry_day": None,
        "tckn_last3": None,
        "groups": 0,
        "list_version": 3,
    }
    assert decode(CheckAnswer, msgpack.packb(answer)).status is None
    del answer["status"]
    assert str(refusal(CheckAnswer, answer)) == "status: required field missing"


# --- maps and arrays -------------------------------------------------------


def test_unknown_and_missing_fields_are_refused() -> None:
    assert str(refusal(TapBatch, wire_batch(wire_tap(), extra=1))) == "extra: unknown field"
    assert refusal(TapBatch, {"v": 1, "taps": [wire_tap()]}).path == "device"
    many = wire_batch(wire_tap(), **{f"x{i}": i for i in range(40)})
    assert refusal(TapBatch, many).path == ""


def test_a_binary_map_key_is_an_unknown_field() -> None:
    wire: dict[Any, Any] = wire_batch(wire_tap())
    wire[b"v"] = 1
    err = refusal(TapBatch, wire)
    assert err.path == "b'v'"
    assert err.problem == "unknown field"


def test_a_non_string_map_key_is_refused() -> None:
    wire: dict[object, object] = {1: 1}
    assert refusal(TapAck, wire).path == ""


def test_a_duplicate_map_key_is_refused() -> None:
    body = b"\x84" + b"".join(
        msgpack.packb(k) + msgpack.packb(v) for k, v in [("v", 1), ("ack", 1), ("stored", 0)]
    )
    body += msgpack.packb("ack") + msgpack.packb(2)
    with pytest.raises(MessageError, match="duplicate map key 'ack'") as caught:
        decode(TapAck, body)
    assert caught.value.path == ""


def test_a_record_with_too_few_or_too_many_items_is_refused() -> None:
    assert str(refusal(TapBatch, wire_batch(wire_tap()[:11]))) == (
        "taps[0]: expected array of 12 to 14 items, got 11"
    )
    assert refusal(TapBatch, wire_batch([*wire_tap()[:12], 1.0, 2.0, 3.0])).path == "taps[0]"
    assert str(refusal(TapBatch, {**wire_batch(), "taps": [{"seq": 1}]})) == (
        "taps[0]: expected array of 12 to 14 items, got map"
    )


def test_list_lengths_are_checked() -> None:
    assert str(refusal(TapBatch, wire_batch())) == "taps: expected array of 1 to 5000 items, got 0"
    window = [[], 0, 60]
    policy = msgpack.unpackb(encode(_policy()))
    policy["rules"] = [[1, [window]]]
    assert str(refusal(Policy, policy)) == (
        "rules[0].windows[0].weekdays: expected array of 1 to 7 items, got 0"
    )


def test_a_list_over_its_limit_is_too_large_and_names_the_field() -> None:
    batch = wire_batch(*[wire_tap(seq=i + 1) for i in range(5001)])
    err = refusal(TapBatch, batch)
    assert isinstance(err, MessageTooLarge)
    assert (err.path, err.problem) == ("taps", "expected array of 1 to 5000 items, got 5001")


def test_a_field_over_its_length_is_too_large_a_bad_one_is_not() -> None:
    long_id = refusal(TapBatch, wire_batch(wire_tap(), device="b" * 65))
    assert isinstance(long_id, MessageTooLarge)
    assert long_id.path == "device"
    bad_id = refusal(TapBatch, wire_batch(wire_tap(), device="-bus"))
    assert not isinstance(bad_id, MessageTooLarge)
    assert bad_id.path == "device"


def test_an_array_far_over_its_limit_is_refused_before_it_is_read() -> None:
    batch = wire_batch(*[wire_tap(seq=i + 1) for i in range(10_017)])
    err = refusal(TapBatch, batch)
    assert isinstance(err, MessageTooLarge)
    assert err.path == ""
    assert "10017" in err.problem
    # A header claiming four billion items in five bytes costs nothing either.
    with pytest.raises(MessageError, match="larger than anything in TapBatch"):
        decode(TapBatch, b"\xdd\xff\xff\xff\xff")


def test_a_body_over_the_size_limit_is_refused_unread() -> None:
    data = encode(TapBatch(1, "bus-7", [tap(seq) for seq in range(1, 101)]))
    assert len(decode(TapBatch, data, max_bytes=len(data)).taps) == 100
    with pytest.raises(MessageError, match="more than the 100 allowed"):
        decode(TapBatch, data, max_bytes=100)
    with pytest.raises(MessageError, match="bytes, more than"):
        decode(Signed, bytes(MAX_BODY_BYTES + 1))


# --- bytes that are not MessagePack ------------------------------------------


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "incomplete input"),
        (b"\xc1", "unknown format byte"),
        (b"\x80\x01", "extra bytes"),
        (b"\x91" * 3000, "nested too deeply"),
        (b"\xa2\xff\xfe", "not UTF-8"),
        (msgpack.packb(msgpack.Timestamp(1, 0)), "extension"),
        (msgpack.packb(msgpack.ExtType(5, b"")), "ExtType"),
    ],
)
def test_malformed_bytes_raise_message_error(data: bytes, problem: str) -> None:
    with pytest.raises(MessageError, match=problem) as caught:
        decode(Policy, data)
    assert caught.value.path == ""


def test_a_decoder_wants_bytes() -> None:
    with pytest.raises(MessageError, match="expected bytes"):
        decode(TapAck, 42)  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(cls=st.sampled_from(MESSAGE_CLASSES), data=st.binary(max_size=200))
def test_any_bytes_raise_only_message_error(cls: type[Any], data: bytes) -> None:
    with contextlib.suppress(MessageError):
        decode(cls, data)


PLAIN = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=80)
    | st.binary(max_size=80),
    lambda inner: (
        st.lists(inner, max_size=16)
        | st.dictionaries(st.text(max_size=12) | st.binary(max_size=4), inner, max_size=12)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cls=st.sampled_from(MESSAGE_CLASSES), value=PLAIN)
def test_any_msgpack_value_raises_only_message_error(cls: type[Any], value: object) -> None:
    try:
        message = decode(cls, msgpack.packb(value, use_bin_type=True))
    except MessageError:
        return
    # Whatever passes is a valid message: encoding it again is accepted.
    assert decode(cls, encode(message)) == message


def _replace_somewhere(draw: st.DrawFn, wire: Any, value: object) -> Any:
    """``wire`` with one field, at any depth, replaced by ``value``."""
    if isinstance(wire, dict) and wire:
        key = draw(st.sampled_from(sorted(wire)))
        return {**wire, key: _replace_somewhere(draw, wire[key], value)}
    if isinstance(wire, list) and wire:
        index = draw(st.integers(0, len(wire) - 1))
        return [*wire[:index], _replace_somewhere(draw, wire[index], value), *wire[index + 1 :]]
    return value


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cls=st.sampled_from(MESSAGE_CLASSES), data=st.data())
def test_a_message_with_any_field_changed_decodes_or_names_a_field(
    cls: type[Any], data: st.DataObject
) -> None:
    wire = msgpack.unpackb(encode(data.draw(message_strategy(cls))))
    changed = data.draw(st.composite(_replace_somewhere)(wire, data.draw(PLAIN)))
    try:
        message = decode(cls, msgpack.packb(changed, use_bin_type=True))
    except MessageError as err:
        problem = err
    else:
        assert decode(cls, encode(message)) == message
        return
    assert str(problem) == (
        f"{problem.path}: {problem.problem}" if problem.path else problem.problem
    )


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cls=st.sampled_from(MESSAGE_CLASSES), data=st.data())
def test_damaged_bytes_raise_only_message_error(cls: type[Any], data: st.DataObject) -> None:
    encoded = bytearray(encode(data.draw(message_strategy(cls))))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(encoded) - 1))
        encoded[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    with contextlib.suppress(MessageError):
        decode(cls, bytes(encoded[:cut]))


# --- encoding ----------------------------------------------------------------


def test_encode_refuses_a_message_that_breaks_its_schema() -> None:
    with pytest.raises(MessageError) as caught:
        encode(TapBatch(1, "bus-7", [tap(), tap(2, key=b"short")]))
    assert str(caught.value) == "taps[1].key: expected 8 bytes or nil, got 5"
    with pytest.raises(MessageError, match=r"taps\[0\]\.lat"):
        encode(TapBatch(1, "bus-7", [tap(lat=float("nan"))]))
    with pytest.raises(MessageError, match=r"^v: "):
        encode(TapAck(PROTOCOL_VERSION + 1, 0, 0, 0))


def test_encode_refuses_what_msgpack_cannot_carry() -> None:
    with pytest.raises(MessageError, match="cannot encode"):
        encode(TapBatch(1, "bus-7", [tap(vehicle="\udc80")]))
    with pytest.raises(MessageError, match="cannot encode"):
        encode(TapAck(1, {1}, 0, 0))  # type: ignore[arg-type]


def test_encode_writes_enums_as_their_values() -> None:
    change = ListChange(1, bytes(8), False, HealthStatus.RISKY, None, "001", Groups.UNDER_20)
    wire = msgpack.unpackb(encode(DeltaPage(1, 0, 1, [change], False)))
    assert wire["changes"] == [[1, bytes(8), False, 1, None, "001", 2]]
    assert type(wire["changes"][0][3]) is int


def test_encode_then_decode_keeps_unicode_labels() -> None:
    record = tap(vehicle="İstanbul Şişli 34", route="Üsküdar–Kadıköy")
    assert decode(TapBatch, encode(TapBatch(1, "bus-7", [record]))).taps == [record]


# --- what the codec refuses to build ------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Unbounded:
    v: int


@dataclasses.dataclass(frozen=True, slots=True)
class EitherOr:
    v: Annotated[int, Range(0, 1)] | Annotated[str, Length(0, 1)]


@dataclasses.dataclass(frozen=True, slots=True)
class EndlessList:
    items: list[Annotated[int, Range(0, 1)]]


@dataclasses.dataclass(frozen=True)
class WithPostInit:
    v: Annotated[int, Range(0, 10)]
    doubled: Annotated[int, Range(0, 20)] = dataclasses.field(default=0, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "doubled", self.v * 2)


@pytest.mark.parametrize("cls", [Unbounded, EitherOr, EndlessList])
def test_a_class_without_bounds_or_with_a_union_is_a_schema_error(cls: type[Any]) -> None:
    with pytest.raises(SchemaError):
        decode(cls, msgpack.packb({}))


def test_encoding_something_that_is_not_a_message_is_a_schema_error() -> None:
    with pytest.raises(SchemaError):
        encode(Reason.OK)


def test_a_class_with_post_init_is_built_through_its_init() -> None:
    decoded = decode(WithPostInit, msgpack.packb({"v": 4}))
    assert decoded == WithPostInit(4)
    assert decoded.doubled == 8


def test_decoded_messages_stay_frozen() -> None:
    record = decode(TapBatch, encode(TapBatch(1, "bus-7", [tap()]))).taps[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.seq = 2  # type: ignore[misc]
    assert hash(record) == hash(tap())


def _policy() -> Policy:
    return Policy(1, 1, 0, "Europe/Istanbul", [], Behaviour.DENY, Behaviour.DENY, 600)
