"""MessagePack encoding and strict decoding of the messages in :mod:`protocol.messages`.

:func:`decode` reads untrusted bytes into a message dataclass and checks every
field against its type hint and the constraints of :mod:`protocol.schema`
(type, range, length, pattern, required, unknown). Whatever is wrong, it
raises one :class:`MessageError` that names the field's path, for example
``taps[3].seq: expected int >= 1, got 0``.

Top-level messages travel as maps keyed by field name; ``@compact`` classes
travel as arrays in field order (trailing fields with defaults may be left
off). Enums travel as their values, ``X | None`` accepts nil, ``bool`` is not
an ``int``, an ``int`` is accepted where a ``float`` is expected, and NaN and
infinities are refused.

The depot decodes batches of thousands of records, so each class gets one
decoder, generated as Python source from its type hints the first time it is
used (as :mod:`dataclasses` and attrs generate ``__init__``) and cached.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import operator
import re
import sys
import types
import typing
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

import msgpack

from protocol.messages import MAX_BODY_BYTES
from protocol.schema import COMPACT, Length, Pattern, Range

__all__ = ["MAX_BODY_BYTES", "MessageError", "MessageTooLarge", "SchemaError", "decode", "encode"]

M = TypeVar("M")

#: Flags with at most this many bits get every member precomputed for a dict lookup.
_MAX_PRECOMPUTED_FLAG_BITS: Final = 12
#: A map may have this many keys more than its class has fields (all of them
#: unknown), so that the error names one of them rather than the map's size.
_MAP_SLACK: Final = 16
#: How much of an untrusted value an error message may quote.
_QUOTE_CHARS: Final = 40


class MessageError(ValueError):
    """A message is malformed.

    ``path`` names the field (``"taps[3].seq"``; ``""`` for the whole body)
    and ``problem`` says what is wrong with it.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem

    def under(self, prefix: str) -> MessageError:
        """The same error seen from the field ``prefix`` that contains this one."""
        if not self.path:
            path = prefix
        elif self.path.startswith("["):
            path = prefix + self.path
        else:
            path = f"{prefix}.{self.path}"
        return type(self)(path, self.problem)


class MessageTooLarge(MessageError):
    """A message holds more than its schema allows: a body, list, string or binary too long.

    A server answers it with 413 rather than 400; ``path`` still names the
    field where it can.
    """


class SchemaError(TypeError):
    """A message class uses a type or a constraint the codec does not support.

    This is a programming error in :mod:`protocol.messages`, found the first
    time the class is encoded or decoded.
    """


def encode(message: object) -> bytes:
    """The MessagePack bytes of ``message``, a dataclass from :mod:`protocol.messages`.

    The result is checked against the schema as a receiver would check it, so
    a message that breaks its own constraints (a key of the wrong length, a NaN
    position, a label too long) raises :class:`MessageError` here rather than
    being refused by the other side. The size of the whole body is not limited
    here: the receiver passes its own ``max_bytes`` to :func:`decode`.
    """
    cls = type(message)
    codec = _codec_of(cls)
    try:
        data = msgpack.packb(message, default=_plain, use_bin_type=True, datetime=False)
    except (TypeError, ValueError, OverflowError) as err:
        raise MessageError("", f"cannot encode {cls.__name__}: {err}") from err
    # Our own bytes: msgpack's default limits (the data's size) are safe here,
    # and let an oversized list be named by its path rather than refused whole.
    codec.decode(codec.unpack(data, max_bytes=len(data), trusted=True))
    return data


def decode(cls: type[M], data: bytes, *, max_bytes: int = MAX_BODY_BYTES) -> M:
    """Read a ``cls`` message from untrusted bytes, checking every field.

    Raises :class:`MessageError` for anything that is not a valid ``cls``
    message of at most ``max_bytes`` bytes, and for nothing else.
    """
    codec = _codec_of(cls)
    return cast(M, codec.decode(codec.unpack(data, max_bytes=max_bytes)))


def _plain(obj: object) -> object:
    """``msgpack``'s hook for the dataclasses: their wire form as a tuple or a dict."""
    try:
        codec = _codec_of(type(obj))
    except SchemaError as err:
        raise TypeError(f"cannot encode {type(obj).__name__}: {err}") from err
    return codec.plain(obj)


def _headroom(high: int) -> int:
    """What MessagePack may read for a field whose schema allows ``high``.

    More than ``high``, so a value somewhat over its limit still reaches the
    schema check and its error names the field (``taps: expected at most
    5000 items``); still bounded, so a body cannot declare huge containers.
    """
    return 2 * high + 16


@dataclass(frozen=True, slots=True)
class _Limits:
    """The largest container and string sizes a class's schema allows anywhere."""

    array: int = 0
    map: int = 0
    str_chars: int = 0
    bin: int = 0

    def join(self, other: _Limits) -> _Limits:
        """The limits of a schema holding both."""
        return _Limits(
            max(self.array, other.array),
            max(self.map, other.map),
            max(self.str_chars, other.str_chars),
            max(self.bin, other.bin),
        )


@dataclass(frozen=True, slots=True)
class _Codec:
    """Everything the codec built for one class."""

    cls: type[Any]
    decode: Callable[[object], Any]
    plain: Callable[[Any], object]
    limits: _Limits

    def unpack(self, data: bytes, *, max_bytes: int, trusted: bool = False) -> object:
        """Parse MessagePack, or raise :class:`MessageError`.

        Untrusted data is parsed with this schema's size limits: msgpack
        allocates a container as soon as it reads its header, so a few bytes
        claiming a huge array must be refused before they cost memory.
        """
        try:
            size = len(data)
        except TypeError as err:
            raise MessageError("", f"expected bytes, got {type(data).__name__}") from err
        if size > max_bytes:
            raise MessageTooLarge("", f"body is {size} bytes, more than the {max_bytes} allowed")
        # Our own bytes can only hold as many items as they have bytes.
        limits = _Limits(size, size, size, size) if trusted else self.limits
        try:
            return msgpack.unpackb(
                data,
                raw=False,
                use_list=True,
                strict_map_key=True,
                timestamp=0,
                object_pairs_hook=_map_without_duplicates,
                # A UTF-8 character takes at most 4 bytes.
                max_str_len=4 * limits.str_chars,
                max_bin_len=limits.bin,
                max_array_len=limits.array,
                max_map_len=limits.map,
                max_ext_len=0,
            )
        except _DuplicateKey as err:
            raise MessageError("", str(err)) from err
        except msgpack.ExtraData as err:
            raise MessageError("", "not valid MessagePack: extra bytes after the message") from err
        except msgpack.StackError as err:
            raise MessageError("", "not valid MessagePack: nested too deeply") from err
        except msgpack.FormatError as err:
            raise MessageError("", "not valid MessagePack: unknown format byte") from err
        except UnicodeDecodeError as err:
            raise MessageError("", f"not valid MessagePack: a string is not UTF-8: {err}") from err
        except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as err:
            too_large = _SIZE_LIMIT.fullmatch(str(err)) is not None
            error = MessageTooLarge if too_large else MessageError
            raise error("", _unpack_problem(self.cls, err)) from err


_SIZE_LIMIT: Final = re.compile(r"([0-9]+) exceeds max_(str|bin|array|map|ext)_len\(([0-9]+)\)")
_SIZE_UNITS: Final[Mapping[str, str]] = types.MappingProxyType(
    {
        "str": "a string of {} bytes",
        "bin": "a binary of {} bytes",
        "array": "an array of {} items",
        "map": "a map of {} entries",
        "ext": "an extension value of {} bytes",
    }
)


def _unpack_problem(cls: type[Any], err: Exception) -> str:
    """What msgpack refused, in the codec's words."""
    found = _SIZE_LIMIT.fullmatch(str(err))
    if found is None:
        return f"not valid MessagePack: {err}"
    size, kind, limit = found.groups()
    what = _SIZE_UNITS[kind].format(size)
    if kind == "ext":
        return f"{what}: extension types are not used"
    return f"{what} is larger than anything in {cls.__name__} may be (at most {limit})"


class _DuplicateKey(ValueError):
    """A map holds a key twice: refused, since readers could disagree on its value."""


def _map_without_duplicates(pairs: list[tuple[str | bytes, object]]) -> dict[str | bytes, object]:
    mapping = dict(pairs)
    if len(mapping) != len(pairs):
        seen: set[str | bytes] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(f"duplicate map key {_quote(key)}")
            seen.add(key)
    return mapping


# --- describing values in errors --------------------------------------------

_WIRE_NAMES: Final[Mapping[type, str]] = types.MappingProxyType(
    {
        type(None): "nil",
        bool: "bool",
        int: "int",
        float: "float",
        str: "string",
        bytes: "binary",
        list: "array",
        dict: "map",
    }
)


def _wire_name(value: object) -> str:
    """What a decoded MessagePack value is, in MessagePack's words."""
    return _WIRE_NAMES.get(type(value), type(value).__name__)


def _quote(value: object) -> str:
    """A short ``repr`` of an untrusted value."""
    if isinstance(value, str | bytes) and len(value) > _QUOTE_CHARS:
        value = value[:_QUOTE_CHARS]  # never repr a whole megabyte
    text = repr(value)
    return text if len(text) <= _QUOTE_CHARS else text[: _QUOTE_CHARS - 3] + "..."


def _span(length: Length, unit: str) -> str:
    if length.low == length.high:
        return f"{length.low} {unit}"
    return f"{length.low} to {length.high} {unit}"


# --- the shapes a field can have --------------------------------------------


class _Node:
    """One field type, compiled into the generated decoder."""

    __slots__ = ()

    def limits(self) -> _Limits:
        """The container and string sizes this type allows."""
        return _Limits()

    def emit(self, src: str, dst: str, fail: str, gen: _Generator) -> list[str]:
        """Statements that check ``src`` and bind its decoded value to ``dst``.

        On a bad value they ``raise`` the expression ``fail``, which is called
        with the value.
        """
        raise NotImplementedError

    def explain(self, value: object) -> tuple[str, str]:
        """Why ``value`` is not acceptable here: what was expected, and what came."""
        raise NotImplementedError

    def too_long(self, value: object) -> bool:
        """Whether ``value`` is refused only for holding more than this type allows."""
        return False


@dataclass(frozen=True, slots=True)
class _IntNode(_Node):
    bounds: Range

    def emit(self, src: str, dst: str, fail: str, gen: _Generator) -> list[str]:
        low, high = int(self.bounds.low), int(self.bounds.high)
        return [
            f"if type({src}) is not int or not {low} <= {src} <= {high}:",
            f"    raise {fail}({src})",
            f"{dst} = {src}",
        ]

    def explain(self, value: object) -> tuple[str, str]:
        if type(value) is not int:
            return "int", _wire_name(value)
        if value < self.bounds.low:
            return f"int >= {int(self.bounds.low)}", str(value)
        return f"int <= {int(self.bounds.high)}", str(value)


@dataclass(frozen=True, slots=True)
class _FloatNode(_Node):
    bounds: Range

    def emit(self, src: str, dst: str, fail: str, gen: _Generator) -> list[str]:
        # Comparisons with NaN are false, so a NaN fails the range check; the
        # bounds are finite, so infinities fail it too. Comparing an int with
        # a float is exact in Python, so a huge int cannot overflow here.
        ok = f"{self.bounds.low!r} <= {src} <= {self.bounds.high!r}"
        return [
            f"if type({src}) is float and {ok}:",
            f"    {dst} = {src}",
            f"elif type({src}) is int and {ok}:",
            f"    {dst} = float({src})",
            "else:",
            f"    raise {fail}({src})",
        ]

    def explain(self, value: object) -> tuple[str, str]:
        if type(value) is float:
            number: float = value
            if not math.isfinite(number):
                return "a finite float", str(number)
        elif type(value) is int:
            number = value
        else:
            return "float", _wire_name(value)
        if number < self.bounds.low:
            return f"float >= {self.bounds.low}", _quote(number)
        return f"float <= {self.bounds.high}", _quote(number)


#: The bounds of a float field without a Range: any finite float.
_FINITE: Final = Range(-sys.float_info.max, sys.float_info.max)


@dataclass(frozen=True, slots=True)
class _BoolNode(_Node):
    def emit(self, src: str, dst: str, fail: str, gen: _Generator) -> list[str]:
        return [f"if type({src}) is not bool:", f"    raise {fail}({src})", f"{dst} = {src}"]

    def explain(self, value: object) -> tuple[str, str]:
        return "bool", _wire_name(value)


@dataclass(frozen=True, slots=True)
class _StrNode(_Node):
    length: Length
    pattern: Pattern | None

    def limits(self) -> _Limits:
        return _Limits(str_chars=_headroom(self.length.high))

    def emit(self, src: str, dst: str, fail: str, gen: _Generator) -> list[str]:
        bad = f"type({src}) is not str or not {self.length.low} <= len({src}) <= {self.length.high}"
        if self.pattern is not None:
            regex = gen.constant(re.compile(self.pattern.regex))
            bad += f" or {regex}.fullmatch({src}) is None"
        return [f"if {bad}:", f"    raise {fail}({src})", f"{dst} = {src}"]

    def explain(self, value: object) -> tuple[str, str]:
        if type(value) is not str:
            return "string", _wire_name(value)
        if not self.length.low <= len(value) <= self.length.high:
            return _span(self.length, "characters"), str(len(value))
        assert self.pattern is not None  # the length is right, so the pattern is not
        return f"a string matching {self.pattern.regex}", _quote(value)

    def too_long(self, value: object) -> bool:
        return type(value) is str and len(value) > self.length.high


@dataclass(frozen=True, slots=True)
class _BytesNode(_Node):
    length: Length

    def limits(self) -> _Limits:
        return _Limits(bin=_headroom(self.length.high))

    def emit(self, src: str, dst: str, fail: str, gen: _Generator) -> list[str]:
        low, high = self.length.low, self.length.high
        return [
            f"if type({src}) is not bytes or not {low} <= len({src}) <= {high}:",
            f"    raise {fail}({src})",
            f"{dst} = {src}",
        ]

    def explain(self, value: object) -> tuple[str, str]:
        if type(value) is not bytes:
            return "binary", _wire_name(value)
        return _span(self.length, "bytes"), str(len(value))

    def too_long(self, value: object) -> bool:
        return type(value) is bytes and len(value) > self.length.high


@dataclass(frozen=True, slots=True)
class _EnumNode(_Node):
    """An IntEnum or StrEnum: one of its values."""

    cls: type[enum.Enum]
    wire: type  # int or str

    def emit(self, src: str, dst: str, fail: str, gen: _Generator) -> list[str]:
        members = gen.constant({member.value: member for member in self.cls})
        # The type test first: 1.0 and True are equal to 1 as dict keys.
        return [
            f"{dst} = {members}.get({src}) if type({src}) is {self.wire.__name__} else None",
            f"if {dst} is None:",
            f"    raise {fail}({src})",
        ]

    def explain(self, value: object) -> tuple[str, str]:
        values = ", ".join(repr(member.value) for member in self.cls)
        if type(value) is not self.wire:
            return f"{self.cls.__name__} ({values})", _wire_name(value)
        return f"{self.cls.__name__} ({values})", _quote(value)


@dataclass(frozen=True, slots=True)
class _FlagNode(_Node):
    """An IntFlag: an int using only the defined bits."""

    cls: type[enum.IntFlag]

    @property
    def mask(self) -> int:
        """Every defined bit."""
        mask = 0
        for member in self.cls.__members__.values():
            mask |= member.value
        return mask

    def emit(self, src: str, dst: str, fail: str, gen: _Generator) -> list[str]:
        mask = self.mask
        head = [f"if type({src}) is not int or {src} & {~mask}:", f"    raise {fail}({src})"]
        if mask.bit_count() <= _MAX_PRECOMPUTED_FLAG_BITS:
            members = {value: self.cls(value) for value in range(mask + 1) if not value & ~mask}
            return [*head, f"{dst} = {gen.constant(members)}[{src}]"]
        return [*head, f"{dst} = {gen.constant(self.cls)}({src})"]

    def explain(self, value: object) -> tuple[str, str]:
        if type(value) is not int:
            return f"{self.cls.__name__} flags", _wire_name(value)
        return f"{self.cls.__name__} flags within {self.mask:#x}", str(value)


@dataclass(frozen=True, slots=True)
class _OptionalNode(_Node):
    inner: _Node

    def limits(self) -> _Limits:
        return self.inner.limits()

    def emit(self, src: str, dst: str, fail: str, gen: _Generator) -> list[str]:
        inner = self.inner.emit(src, dst, fail, gen)
        return [f"if {src} is None:", f"    {dst} = None", "else:", *_indent(inner)]

    def explain(self, value: object) -> tuple[str, str]:
        expected, got = self.inner.explain(value)
        return f"{expected} or nil", got


@dataclass(frozen=True, slots=True)
class _ListNode(_Node):
    item: _Node
    length: Length

    def limits(self) -> _Limits:
        return self.item.limits().join(_Limits(array=_headroom(self.length.high)))

    def emit(self, src: str, dst: str, fail: str, gen: _Generator) -> list[str]:
        low, high = self.length.low, self.length.high
        item = gen.item_decoder(self.item)
        return [
            f"if type({src}) is not list or not {low} <= len({src}) <= {high}:",
            f"    raise {fail}({src})",
            f"{dst} = {gen.constant(_decode_items)}({item}, {src})",
        ]

    def explain(self, value: object) -> tuple[str, str]:
        if type(value) is not list:
            return "array", _wire_name(value)
        return f"array of {_span(self.length, 'items')}", str(len(value))

    def too_long(self, value: object) -> bool:
        return type(value) is list and len(value) > self.length.high


def _decode_items(decode_item: Callable[[object], object], items: list[object]) -> list[object]:
    """Decode every item, naming the index of the first bad one."""
    try:
        return [decode_item(item) for item in items]
    except MessageError:
        # The slow path, only for a bad message: find which item it was.
        for index, item in enumerate(items):
            try:
                decode_item(item)
            except MessageError as err:
                raise err.under(f"[{index}]") from err.__cause__
        raise


@dataclass(frozen=True, slots=True)
class _ClassNode(_Node):
    """A nested message class, decoded by its own generated function."""

    codec: _Codec

    def limits(self) -> _Limits:
        return self.codec.limits

    def emit(self, src: str, dst: str, fail: str, gen: _Generator) -> list[str]:
        return [f"{dst} = {gen.constant(self.codec.decode)}({src})"]

    def explain(self, value: object) -> tuple[str, str]:
        # Only reached if the nested decoder accepted what its caller refuses.
        raise AssertionError("a nested class explains its own errors")


def _indent(lines: Iterable[str]) -> list[str]:
    return ["    " + line for line in lines]


# --- reading the type hints --------------------------------------------------


def _node_of(hint: object, where: str) -> _Node:
    """The node for one type hint; ``where`` names the field for a :class:`SchemaError`."""
    meta: tuple[object, ...] = ()
    if typing.get_origin(hint) is typing.Annotated:
        meta = hint.__metadata__  # type: ignore[attr-defined]
        hint = typing.get_args(hint)[0]
    ranges = [m for m in meta if isinstance(m, Range)]
    lengths = [m for m in meta if isinstance(m, Length)]
    patterns = [m for m in meta if isinstance(m, Pattern)]
    bounds = ranges[0] if ranges else None
    length = lengths[0] if lengths else None
    pattern = patterns[0] if patterns else None

    origin = typing.get_origin(hint)
    if origin is types.UnionType or origin is typing.Union:
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) != 1 or len(typing.get_args(hint)) != 2:
            raise SchemaError(f"{where}: only `X | None` unions are supported, not {hint}")
        return _OptionalNode(_node_of(args[0], where))
    if origin is list:
        (item,) = typing.get_args(hint)
        if length is None:
            raise SchemaError(f"{where}: a list needs a Length")
        return _ListNode(_node_of(item, f"{where}[]"), length)
    if not isinstance(hint, type):
        raise SchemaError(f"{where}: unsupported type {hint!r}")
    if issubclass(hint, enum.IntFlag):
        return _FlagNode(hint)
    if issubclass(hint, enum.Flag):
        raise SchemaError(f"{where}: flags must be IntFlag")
    if issubclass(hint, enum.IntEnum):
        return _EnumNode(hint, int)
    if issubclass(hint, enum.StrEnum):
        return _EnumNode(hint, str)
    if issubclass(hint, enum.Enum):
        raise SchemaError(f"{where}: enums must be IntEnum, StrEnum or IntFlag")
    if hint is bool:
        return _BoolNode()
    if hint is int:
        if bounds is None:
            raise SchemaError(f"{where}: an int needs a Range")
        return _IntNode(bounds)
    if hint is float:
        return _FloatNode(bounds or _FINITE)
    if hint is str:
        if length is None:
            raise SchemaError(f"{where}: a str needs a Length")
        return _StrNode(length, pattern)
    if hint is bytes:
        if length is None:
            raise SchemaError(f"{where}: bytes need a Length")
        return _BytesNode(length)
    if dataclasses.is_dataclass(hint):
        return _ClassNode(_codec_of(hint))
    raise SchemaError(f"{where}: unsupported type {hint.__name__}")


# --- generating a class's decoder --------------------------------------------


class _Generator:
    """Collects the source and the names one generated decoder uses."""

    def __init__(self) -> None:
        self.namespace: dict[str, object] = {"MessageError": MessageError}

    def constant(self, value: object) -> str:
        """A name the generated code can use for ``value``."""
        name = f"_c{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def failure(self, path: str, node: _Node) -> str:
        """A name for a function that builds the error for a bad value at ``path``."""

        def fail(value: object) -> MessageError:
            expected, got = node.explain(value)
            error = MessageTooLarge if node.too_long(value) else MessageError
            return error(path, f"expected {expected}, got {got}")

        return self.constant(fail)

    def item_decoder(self, node: _Node) -> str:
        """A name for a function decoding one list item."""
        if isinstance(node, _ClassNode):
            return self.constant(node.codec.decode)
        sub = _Generator()
        lines = [
            "def decode_item(value):",
            *_indent(node.emit("value", "out", sub.failure("", node), sub)),
            "    return out",
        ]
        return self.constant(sub.compile(lines, "decode_item", "a list item"))

    def compile(self, lines: list[str], name: str, label: str) -> Callable[[object], Any]:
        """Compile ``lines`` defining the function ``name``."""
        code = compile("\n".join(lines) + "\n", f"<hesgate decoder for {label}>", "exec")
        # The source is generated here from the message classes' own type hints.
        exec(code, self.namespace)  # noqa: S102
        return cast(Callable[[object], Any], self.namespace[name])


@dataclass(frozen=True, slots=True)
class _FieldPlan:
    name: str
    node: _Node
    default: str | None  # an expression for the default, if the field has one


def _fields_of(cls: type[Any]) -> tuple[dataclasses.Field[Any], ...]:
    if not dataclasses.is_dataclass(cls):
        raise SchemaError(f"{cls.__name__} is not a message dataclass")
    fields = dataclasses.fields(cls)
    for field in fields:
        if not field.init:
            raise SchemaError(f"{cls.__name__}.{field.name}: every field must be in __init__")
    return fields


def _codec_of(cls: type[Any]) -> _Codec:
    """The decoder and encoder of a message class, built the first time it is asked for."""
    # Classes are hashable; typeshed's Hashable protocol does not see it.
    return _build_codec(cast(Hashable, cls))


@functools.cache
def _build_codec(key: Hashable) -> _Codec:
    """Build the decoder and encoder of a message class (cached, so once per class)."""
    cls = cast(type[Any], key)
    fields = _fields_of(cls)
    hints = typing.get_type_hints(cls, include_extras=True)
    gen = _Generator()
    plans: list[_FieldPlan] = []
    limits = _Limits()
    for field in fields:
        node = _node_of(hints[field.name], f"{cls.__name__}.{field.name}")
        limits = limits.join(node.limits())
        default: str | None = None
        if field.default is not dataclasses.MISSING:
            default = gen.constant(field.default)
        elif field.default_factory is not dataclasses.MISSING:
            default = f"{gen.constant(field.default_factory)}()"
        plans.append(_FieldPlan(field.name, node, default))

    compact = bool(getattr(cls, COMPACT, False))
    if compact:
        lines = _compact_head(plans, gen)
        limits = limits.join(_Limits(array=len(plans)))
    else:
        lines = _map_head(plans, gen)
        longest_name = max(len(plan.name) for plan in plans)
        limits = limits.join(_Limits(map=len(plans) + _MAP_SLACK, str_chars=longest_name))
    lines += _field_checks(plans, gen)
    lines += _construction(cls, plans, gen)
    decode = gen.compile(["def decode(data):", *_indent(lines)], "decode", cls.__qualname__)

    getter = _attrgetter([plan.name for plan in plans])
    plain: Callable[[Any], object]
    if compact:
        plain = getter
    else:
        names = tuple(plan.name for plan in plans)

        def plain(obj: Any) -> object:
            return dict(zip(names, getter(obj), strict=True))

    return _Codec(cls, decode, plain, limits)


def _attrgetter(names: list[str]) -> Callable[[Any], tuple[object, ...]]:
    """A function returning the tuple of the named attributes."""
    if len(names) == 1:
        name = names[0]
        return lambda obj: (getattr(obj, name),)
    return operator.attrgetter(*names)


_MISSING: Final = object()


def _compact_head(plans: list[_FieldPlan], gen: _Generator) -> list[str]:
    """Unpack an array into ``v0`` ... ``vN``, padding omitted trailing defaults."""
    total = len(plans)
    required = total
    while required and plans[required - 1].default is not None:
        required -= 1
    expected = f"expected array of {required} to {total} items, got"
    if required == total:
        expected = f"expected array of {total} items, got"
    values = ", ".join(f"v{i}" for i in range(total)) + ","
    return [
        "if type(data) is not list:",
        f"    raise MessageError('', {expected!r} f' {{{gen.constant(_wire_name)}(data)}}')",
        f"if len(data) != {total}:",
        f"    if not {required} <= len(data) <= {total}:",
        f"        raise MessageError('', {expected!r} f' {{len(data)}}')",
        f"    data = data + {gen.constant([_MISSING] * total)}[len(data):]",
        f"{values} = data",
    ]


def _map_head(plans: list[_FieldPlan], gen: _Generator) -> list[str]:
    """Read the fields of a map into ``v0`` ... ``vN``, refusing unknown keys."""
    names = gen.constant(frozenset(plan.name for plan in plans))
    missing = gen.constant(_MISSING)
    lines = [
        "if type(data) is not dict:",
        f"    raise MessageError('', 'expected map, got ' + {gen.constant(_wire_name)}(data))",
        "for key in data:",
        f"    if key not in {names}:",
        f"        raise MessageError({gen.constant(_key_path)}(key), 'unknown field')",
    ]
    for i, plan in enumerate(plans):
        lines.append(f"v{i} = data.get({plan.name!r}, {missing})")
        if plan.default is None:
            lines += [
                f"if v{i} is {missing}:",
                f"    raise MessageError({plan.name!r}, 'required field missing')",
            ]
    return lines


def _key_path(key: object) -> str:
    """How an unknown map key appears in an error's path."""
    if type(key) is str and _FIELD_NAME.fullmatch(key):
        return key
    return _quote(key)


_FIELD_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _field_checks(plans: list[_FieldPlan], gen: _Generator) -> list[str]:
    """Check ``v0`` ... ``vN`` into ``x0`` ... ``xN``."""
    missing = gen.constant(_MISSING)
    lines: list[str] = []
    for i, plan in enumerate(plans):
        nests = _nests(plan.node)
        # A nested class or list raises errors with paths relative to this field.
        fail = gen.failure("" if nests else plan.name, plan.node)
        check = plan.node.emit(f"v{i}", f"x{i}", fail, gen)
        if nests:
            check = [
                "try:",
                *_indent(check),
                "except MessageError as err:",
                f"    raise err.under({plan.name!r}) from err.__cause__",
            ]
        if plan.default is not None:
            check = [
                f"if v{i} is {missing}:",
                f"    x{i} = {plan.default}",
                "else:",
                *_indent(check),
            ]
        lines += check
    return lines


def _nests(node: _Node) -> bool:
    if isinstance(node, _OptionalNode):
        return _nests(node.inner)
    return isinstance(node, _ListNode | _ClassNode)


def _construction(cls: type[Any], plans: list[_FieldPlan], gen: _Generator) -> list[str]:
    """Build the instance from ``x0`` ... ``xN``.

    Calling a frozen dataclass's ``__init__`` costs one ``object.__setattr__``
    call per field, which is most of the time spent decoding a large batch.
    For a slots class without ``__post_init__`` we fill an instance of a
    mutable twin with the same slots instead, and then make it a ``cls``:
    CPython allows ``__class__`` assignment between identical layouts.
    """
    twin = _mutable_twin(cls)
    values = [f"x{i}" for i in range(len(plans))]
    if twin is None:
        return [f"return {gen.constant(cls)}({', '.join(values)})"]
    lines = [f"obj = {gen.constant(object.__new__)}({gen.constant(twin)})"]
    lines += [f"obj.{plan.name} = x{i}" for i, plan in enumerate(plans)]
    lines += [f"obj.__class__ = {gen.constant(cls)}", "return obj"]
    return lines


def _mutable_twin(cls: type[Any]) -> type[Any] | None:
    """A plain class with ``cls``'s slots whose instances can become ``cls``, if any."""
    slots = cls.__dict__.get("__slots__")
    if slots is None or hasattr(cls, "__post_init__") or cls.__bases__ != (object,):
        return None
    twin = type(f"_Mutable{cls.__name__}", (object,), {"__slots__": tuple(slots)})
    probe: Any = object.__new__(twin)
    try:
        probe.__class__ = cls
    except TypeError:
        return None
    return twin
