"""What a serial QR scanner, a card reader or the keypad hands over, as a typed credential.

A frame is one read, its line terminator possibly still attached. It holds one of:

* the app's QR payload ``<11 chars>|<HES code>`` (``;`` for ``|`` from
  keyboard-emulating scanners); the T.C. Kimlik No's last 3 digits are kept
  when the 11 characters are a valid T.C. Kimlik No;
* a bare HES code, with or without dashes and spaces, in any case;
* a card reader frame ``CARD:<UID hex>`` (4, 7 or 10 bytes: 8, 14 or 20 hex
  digits, any case).

Any of them may start with an AIM symbology identifier (``]Q1``) and be
surrounded by spaces, tabs, CR and LF. Anything else raises :class:`FrameError`,
whose ``reason`` says what is wrong and whose message never holds the letters
and digits of what was read (HES codes and T.C. numbers are personal data).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from protocol import hescode, tckn
from protocol.credentials import Credential, ReadMethod
from protocol.reasons import Colour, ScreenText

#: The longest frame accepted, terminator included. The app's QR payload with
#: an AIM prefix and CRLF is 27 bytes; the serial reader drops longer lines too.
MAX_FRAME_BYTES: Final = 128

#: What a card reader frame starts with (matched in any case).
CARD_PREFIX: Final = "CARD:"

#: The card UID sizes accepted, in hex digits: 4-, 7- and 10-byte ISO 14443 UIDs.
CARD_UID_HEX_LENGTHS: Final = frozenset({8, 14, 20})

#: The QR payload's first field is this many characters (a T.C. Kimlik No).
QR_TCKN_FIELD_LENGTH: Final = 11

#: How many bytes of a refused frame an error message shows (as a shape).
SHAPE_PREFIX_BYTES: Final = 24

_WHITESPACE: Final = b" \t\r\n"
_WHITESPACE_STR: Final = " \t\r\n"
_CONTROL: Final = re.compile(rb"[\x00-\x1f\x7f]")
_CONTROL_STR: Final = re.compile(r"[\x00-\x1f\x7f]")
_NON_ASCII: Final = re.compile(rb"[^\x00-\x7f]")
_CONTROL_NOT_LINE_BREAK: Final = re.compile(rb"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f]")
_LINE_BREAKS: Final = re.compile(rb"[\r\n]+")
_AIM: Final = re.compile(r"\][A-Za-z][0-9A-Za-z]")
_CARD: Final = re.compile(re.escape(CARD_PREFIX), re.IGNORECASE)
_HEX: Final = re.compile(r"[0-9A-Fa-f]*")
_SEPARATOR: Final = re.compile(r"[|;]")
_QR_TCKN_FIELD: Final = re.compile(r"[!-~]{11}")
_NOT_CODE_CHAR: Final = re.compile(r"[^A-Z0-9]")
_THREE_DIGITS: Final = re.compile(r"[0-9]{3}")


class FrameProblem(enum.StrEnum):
    """Why a frame (or a keypad entry) was refused."""

    EMPTY = "empty"
    """Nothing but whitespace, line ends or a symbology identifier."""
    TOO_LONG = "too_long"
    """Longer than :data:`MAX_FRAME_BYTES`."""
    CONTROL_BYTES = "control_bytes"
    """NUL, another control byte or DEL inside the frame."""
    NON_ASCII = "non_ascii"
    """A byte or character outside ASCII: Turkish İ, ı, ş from a keyboard layout."""
    BAD_CHARACTERS = "bad_characters"
    """The HES code holds something other than letters, digits, spaces and dashes."""
    BAD_LENGTH = "bad_length"
    """The HES code is not 10 letters and digits."""
    TWO_CODES = "two_codes"
    """More than one code or card in one frame."""
    BAD_QR_FIELD = "bad_qr_field"
    """A ``|`` or ``;`` payload that is not ``<11 characters>|<HES code>``."""
    BAD_CARD_UID = "bad_card_uid"
    """A card frame whose UID is not 8, 14 or 20 hex digits."""
    BAD_TCKN = "bad_tckn"
    """The T.C. Kimlik No digits typed on the keypad are not 3 digits."""
    ODD_TCKN = "odd_tckn"
    """The last T.C. Kimlik No digit typed is odd: every T.C. Kimlik No ends even."""


#: What the validator screen can say about each problem: the rider tries again.
HINTS: Final[Mapping[FrameProblem, ScreenText]] = MappingProxyType(
    {
        FrameProblem.EMPTY: ScreenText(
            Colour.YELLOW, "Okunamadı, tekrar deneyin", "Nothing was read, please try again"
        ),
        FrameProblem.TOO_LONG: ScreenText(
            Colour.YELLOW, "Okunan veri çok uzun", "What was read is too long"
        ),
        FrameProblem.CONTROL_BYTES: ScreenText(
            Colour.YELLOW, "Okuma hatası, tekrar deneyin", "Read error, please try again"
        ),
        FrameProblem.NON_ASCII: ScreenText(
            Colour.YELLOW,
            "Türkçe harf kullanmayın (İ, ı, ş, ğ, ü, ö, ç)",
            "Do not use Turkish letters (İ, ı, ş, ğ, ü, ö, ç)",
        ),
        FrameProblem.BAD_CHARACTERS: ScreenText(
            Colour.YELLOW,
            "HES kodu yalnızca harf ve rakamdan oluşur",
            "A HES code has only letters and digits",
        ),
        FrameProblem.BAD_LENGTH: ScreenText(
            Colour.YELLOW, "HES kodu 10 karakterdir", "A HES code has 10 characters"
        ),
        FrameProblem.TWO_CODES: ScreenText(
            Colour.YELLOW, "Tek seferde tek kod okutun", "Show one code at a time"
        ),
        FrameProblem.BAD_QR_FIELD: ScreenText(
            Colour.YELLOW, "Bu karekod bir HES karekodu değil", "This is not a HES QR code"
        ),
        FrameProblem.BAD_CARD_UID: ScreenText(
            Colour.YELLOW, "Kart okunamadı, tekrar okutun", "Card not read, please tap again"
        ),
        FrameProblem.BAD_TCKN: ScreenText(
            Colour.YELLOW,
            "T.C. Kimlik No'nun son 3 hanesini girin",
            "Enter the last 3 digits of your T.C. ID number",
        ),
        FrameProblem.ODD_TCKN: ScreenText(
            Colour.YELLOW,
            "T.C. Kimlik No çift rakamla biter: son haneyi kontrol edin",
            "A T.C. ID number ends in an even digit: check the last digit",
        ),
    }
)


class FrameError(ValueError):
    """A frame or keypad entry that is not a credential.

    ``reason`` says what is wrong, ``detail`` says it in words and ``shape``
    shows the start of what was read with letters as ``A``/``a`` and digits as
    ``9``, other bytes escaped: enough to diagnose a scanner, nothing personal.
    """

    def __init__(self, reason: FrameProblem, detail: str, shape: str) -> None:
        super().__init__(f"{reason.value}: {detail} (frame {shape})")
        self.reason = reason
        self.detail = detail
        self.shape = shape

    @property
    def hint(self) -> ScreenText:
        """What to show the rider."""
        return HINTS[self.reason]


def _shape_of_byte(byte: int) -> str:
    """How one byte appears in a frame's shape."""
    char = chr(byte)
    if "A" <= char <= "Z":
        return "A"
    if "a" <= char <= "z":
        return "a"
    if "0" <= char <= "9":
        return "9"
    if char in "\\'":
        return "\\" + char
    if 0x20 <= byte < 0x7F:
        return char
    return {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}.get(byte, f"\\x{byte:02x}")


_SHAPES: Final = tuple(_shape_of_byte(byte) for byte in range(256))


def frame_shape(frame: bytes | str) -> str:
    r"""The start of ``frame`` with letters and digits masked and the rest escaped, quoted.

    ``b"]Q1R7g6-9154\r\n"`` -> ``']A9A9a9-9999\r\n'``. Safe for a log line.
    """
    data = frame.encode("utf-8", "backslashreplace") if isinstance(frame, str) else frame
    shown = "".join(_SHAPES[byte] for byte in data[:SHAPE_PREFIX_BYTES])
    more = "..." if len(data) > SHAPE_PREFIX_BYTES else ""
    return f"'{shown}'{more}"


def _refuse(reason: FrameProblem, detail: str, frame: bytes | str) -> FrameError:
    return FrameError(reason, detail, frame_shape(frame))


def parse_frame(frame: bytes) -> Credential:
    """The credential one scanner or card reader frame holds, or raise :class:`FrameError`.

    Scanned HES codes come back with :attr:`ReadMethod.QR`, cards with
    :attr:`ReadMethod.CARD` and an upper-case hex UID.
    """
    if len(frame) > MAX_FRAME_BYTES:
        raise _refuse(
            FrameProblem.TOO_LONG, f"{len(frame)} bytes, at most {MAX_FRAME_BYTES}", frame
        )
    body = frame.strip(_WHITESPACE)
    if not body:
        raise _refuse(FrameProblem.EMPTY, "nothing but whitespace and line ends", frame)
    start = len(frame) - len(frame.lstrip(_WHITESPACE))
    end = start + len(body)
    if not body.isascii():
        found = _NON_ASCII.search(frame, start, end)
        offset = found.start() if found is not None else start
        raise _refuse(FrameProblem.NON_ASCII, _non_ascii_detail(frame, offset), frame)
    if _CONTROL.search(frame, start, end) is not None:
        raise _control_error(frame, start, end)
    text = body.decode("ascii")
    aim = _AIM.match(text)
    if aim is not None:
        text = text[aim.end() :].lstrip(" ")
        if not text:
            raise _refuse(FrameProblem.EMPTY, "only a symbology identifier", frame)
    if _CARD.match(text) is not None:
        return _card(text, frame)
    return _scanned(text, frame)


def parse_keypad(code: str, tckn_last3: str) -> Credential:
    """The credential a rider typed: a HES code and the last 3 digits of their T.C. Kimlik No.

    Raises :class:`FrameError`; an odd last digit is :attr:`FrameProblem.ODD_TCKN`.
    """
    if len(code) > MAX_FRAME_BYTES:
        raise _refuse(
            FrameProblem.TOO_LONG, f"{len(code)} characters, at most {MAX_FRAME_BYTES}", code
        )
    text = code.strip(_WHITESPACE_STR)
    if not text:
        raise _refuse(FrameProblem.EMPTY, "no HES code typed", code)
    if not text.isascii():
        offset = next(i for i, char in enumerate(code) if not char.isascii())
        char = code[offset]
        detail = f"non-ASCII character {char!r} (U+{ord(char):04X}) at offset {offset}"
        raise _refuse(FrameProblem.NON_ASCII, detail, code)
    control = _CONTROL_STR.search(text)
    if control is not None:
        detail = f"control character 0x{ord(control.group()):02x} at offset {control.start()}"
        raise _refuse(FrameProblem.CONTROL_BYTES, detail, code)
    value = _code(text, code)
    digits = tckn_last3.strip(_WHITESPACE_STR)
    try:
        tckn.validate_last3(digits)
    except tckn.InvalidTckn as err:
        # validate_last3 refuses three digits only for an odd last one.
        odd = _THREE_DIGITS.fullmatch(digits) is not None
        problem = FrameProblem.ODD_TCKN if odd else FrameProblem.BAD_TCKN
        raise _refuse(problem, err.reason, tckn_last3) from err
    return Credential(ReadMethod.KEYPAD, value, digits)


def _non_ascii_detail(frame: bytes, offset: int) -> str:
    """Name the first non-ASCII byte, and the character it starts if it is UTF-8."""
    detail = f"non-ASCII byte 0x{frame[offset]:02x} at offset {offset}"
    for size in (2, 3, 4):
        try:
            char = frame[offset : offset + size].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return f"{detail} (UTF-8 {char!r}, U+{ord(char):04X})"
    return detail


def _control_error(frame: bytes, start: int, end: int) -> FrameError:
    """Credentials on separate lines are two codes; any other control byte is just that."""
    found = _CONTROL_NOT_LINE_BREAK.search(frame, start, end)
    if found is None:
        lines = [line for line in _LINE_BREAKS.split(frame[start:end]) if line.strip(_WHITESPACE)]
        if len(lines) > 1 and all(_reads(line) for line in lines):
            detail = f"{len(lines)} credentials on separate lines"
            return _refuse(FrameProblem.TWO_CODES, detail, frame)
        found = _LINE_BREAKS.search(frame, start, end)
    offset = found.start() if found is not None else start
    detail = f"control byte 0x{frame[offset]:02x} at offset {offset}"
    return _refuse(FrameProblem.CONTROL_BYTES, detail, frame)


def _reads(line: bytes) -> bool:
    """Whether one line (no CR or LF in it) is a credential on its own."""
    try:
        parse_frame(line)
    except FrameError:
        return False
    return True


def _card(text: str, frame: bytes) -> Credential:
    """A card reader frame, ``CARD:`` and the UID in hex."""
    uid = text[len(CARD_PREFIX) :].strip(" ")
    if _CARD.search(uid) is not None:
        raise _refuse(FrameProblem.TWO_CODES, "more than one card frame", frame)
    if _HEX.fullmatch(uid) is None:
        raise _refuse(FrameProblem.BAD_CARD_UID, "the UID may hold only hex digits 0-9 A-F", frame)
    if len(uid) not in CARD_UID_HEX_LENGTHS:
        detail = f"the UID has {len(uid)} hex digits, expected 8, 14 or 20"
        raise _refuse(FrameProblem.BAD_CARD_UID, detail, frame)
    return Credential(ReadMethod.CARD, uid.upper())


def _scanned(text: str, frame: bytes) -> Credential:
    """A QR payload ``<11 chars>|<code>`` or a bare code."""
    fields = _SEPARATOR.split(text)
    if len(fields) == 1:
        return Credential(ReadMethod.QR, _code(text, frame))
    if len(fields) > 2:
        separators = len(fields) - 1
        if _is_code(fields[-1]):
            detail = f"{separators} field separators: more than one QR payload"
            raise _refuse(FrameProblem.TWO_CODES, detail, frame)
        detail = f"{separators} field separators ('|' or ';'), a HES QR payload has one"
        raise _refuse(FrameProblem.BAD_QR_FIELD, detail, frame)
    first, code_field = fields
    first = first.strip(" ")
    if _QR_TCKN_FIELD.fullmatch(first) is None:
        if _is_code(first) and _is_code(code_field):
            raise _refuse(FrameProblem.TWO_CODES, "two HES codes split by '|' or ';'", frame)
        detail = (
            f"the field before the separator is {len(first)} characters, "
            f"expected {QR_TCKN_FIELD_LENGTH} without spaces"
        )
        raise _refuse(FrameProblem.BAD_QR_FIELD, detail, frame)
    value = _code(code_field, frame)
    # The Ministry has not said whether this field can be masked: no digits, no refusal.
    last3 = first[-3:] if tckn.is_valid(first) else None
    return Credential(ReadMethod.QR, value, last3)


def _is_code(field: str) -> bool:
    """Whether ``field`` (ASCII) normalises to one HES code."""
    return hescode.is_valid(hescode.normalize(field))


def _code(field: str, shown: bytes | str) -> str:
    """The normalised HES code in ``field`` (ASCII, no control characters)."""
    code = hescode.normalize(field)
    bad = _NOT_CODE_CHAR.search(code)
    if bad is not None:
        detail = f"the HES code holds {bad.group()!r}: only letters A-Z and digits 0-9"
        raise _refuse(FrameProblem.BAD_CHARACTERS, detail, shown)
    if len(code) == hescode.HES_CODE_LENGTH:
        return code
    if code and len(code) % hescode.HES_CODE_LENGTH == 0:
        detail = f"{len(code)} letters and digits: {len(code) // 10} HES codes run together"
        raise _refuse(FrameProblem.TWO_CODES, detail, shown)
    detail = f"the HES code has {len(code)} characters, expected {hescode.HES_CODE_LENGTH}"
    raise _refuse(FrameProblem.BAD_LENGTH, detail, shown)
