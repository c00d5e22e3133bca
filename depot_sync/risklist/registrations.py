"""``hes-depot import-registrations``: the municipality's card-to-HES-code registrations.

A CSV file with a header row (comma or semicolon separated, UTF-8):

``card_uid``
    The transit card's UID in hex (``04A224B2C61E80``; ``:``, ``-`` and spaces
    are ignored). May be empty: the row then registers the HES code alone.
``hes_code``
    The HES code (``R7G6-9154-15`` or ``R7G6915415``).
``tckn``
    The owner's T.C. Kimlik No (11 digits, checked, and only its last 3
    digits kept) or just those last 3 digits.
``birth_year`` / ``age_group``
    One of them: a year (1900 to this year) or ``65+``, ``under_20``,
    ``adult``. Either column may be missing from the file.

Importing the same file again changes nothing. Every rejected row is
reported with its line number and the reason; rows never quote raw codes or
numbers back.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final

import structlog

from depot_sync.crypto import FieldCipher, credential_context
from depot_sync.db import Conn
from depot_sync.risklist.credentials import card_key, groups_for_birth_year, hes_key, lock_list
from protocol import hescode, tckn
from protocol.risk import Groups

log = structlog.get_logger("hesgate.depot.registrations")

REQUIRED_COLUMNS: Final = ("card_uid", "hes_code", "tckn")
OPTIONAL_COLUMNS: Final = ("birth_year", "age_group")
#: Rows written per transaction.
CHUNK: Final = 1000
_UID_SEPARATORS: Final = str.maketrans("", "", ":- \t")
_HEX: Final = re.compile(r"(?:[0-9A-F]{2}){4,10}")
_AGE_GROUPS: Final[Mapping[str, Groups]] = MappingProxyType(
    {
        "65+": Groups.AGE_65_PLUS,
        "65_plus": Groups.AGE_65_PLUS,
        "under_20": Groups.UNDER_20,
        "under20": Groups.UNDER_20,
        "<20": Groups.UNDER_20,
        "adult": Groups.NONE,
        "20-64": Groups.NONE,
    }
)


class RegistrationFileError(ValueError):
    """The file as a whole cannot be read (missing columns, not CSV, not UTF-8)."""


@dataclass(frozen=True, slots=True)
class Registration:
    """One accepted row."""

    line: int
    card_uid: str | None
    hes_code: str
    last3: str
    birth_year: int | None
    groups: Groups


@dataclass(frozen=True, slots=True)
class Rejection:
    """A row that was not imported, and why."""

    line: int
    reason: str


@dataclass(slots=True)
class ImportReport:
    """What an import did."""

    rows: int = 0
    codes_added: int = 0
    codes_updated: int = 0
    cards_added: int = 0
    cards_updated: int = 0
    unchanged: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        """Rows that passed the checks."""
        return self.rows - len(self.rejected)

    def lines(self) -> Iterator[str]:
        """The report for people, one line at a time."""
        yield (
            f"{self.rows} rows: {self.accepted} accepted, {len(self.rejected)} rejected; "
            f"HES codes {self.codes_added} added, {self.codes_updated} updated; "
            f"cards {self.cards_added} added, {self.cards_updated} updated; "
            f"{self.unchanged} already as registered"
        )
        for rejection in self.rejected:
            yield f"line {rejection.line}: {rejection.reason}"


class _RowError(ValueError):
    pass


def normalize_uid(text: str) -> str:
    """A card UID as upper-case hex without separators, 4 to 10 bytes."""
    uid = text.translate(_UID_SEPARATORS).upper()
    if not _HEX.fullmatch(uid):
        raise _RowError("card_uid: expected 4 to 10 bytes of hexadecimal (8 to 20 digits)")
    return uid


def _last3(text: str) -> str:
    digits = text.strip()
    try:
        if len(digits) == 11:
            return tckn.last3(digits)
        if len(digits) == 3:
            return tckn.validate_last3(digits)
    except tckn.InvalidTckn as err:
        raise _RowError(f"tckn: {err.reason}") from err
    raise _RowError("tckn: expected the 11-digit T.C. Kimlik No or its last 3 digits")


def _age(birth_year: str, age_group: str, year: int) -> tuple[int | None, Groups]:
    birth_year, age_group = birth_year.strip(), age_group.strip().lower()
    if birth_year and age_group:
        raise _RowError("give birth_year or age_group, not both")
    if birth_year:
        if not birth_year.isdigit() or not 1900 <= int(birth_year) <= year:
            raise _RowError(f"birth_year: expected a year from 1900 to {year}")
        born = int(birth_year)
        return born, groups_for_birth_year(born, year)
    if age_group:
        groups = _AGE_GROUPS.get(age_group)
        if groups is None:
            raise _RowError("age_group: expected 65+, under_20 or adult")
        return None, groups
    raise _RowError("birth_year or age_group is needed")


def parse_row(line: int, row: dict[str, str], year: int) -> Registration:
    """Check one row; raises ``_RowError`` naming the column."""
    uid_text = (row.get("card_uid") or "").strip()
    uid = normalize_uid(uid_text) if uid_text else None
    try:
        code = hescode.parse(row.get("hes_code") or "")
    except hescode.InvalidHesCode as err:
        raise _RowError(f"hes_code: {err.reason}") from err
    last3 = _last3(row.get("tckn") or "")
    birth_year, groups = _age(row.get("birth_year") or "", row.get("age_group") or "", year)
    return Registration(line, uid, code, last3, birth_year, groups)


def read_rows(text: str, year: int) -> tuple[list[Registration], list[Rejection], int]:
    """Parse and check the file: accepted rows, rejected rows, and the row count."""
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise RegistrationFileError(
            f"the header row lacks {', '.join(missing)}: expected columns "
            f"{', '.join(REQUIRED_COLUMNS)} and birth_year or age_group"
        )
    unknown = [c for c in columns if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        raise RegistrationFileError(f"unknown columns: {', '.join(unknown)}")
    reader.fieldnames = columns
    accepted: list[Registration] = []
    rejected: list[Rejection] = []
    by_card: dict[str, Registration] = {}
    by_code: dict[str, Registration] = {}
    rows = 0
    try:
        for raw in reader:
            rows += 1
            line = reader.line_num
            if None in raw:
                rejected.append(Rejection(line, "more fields than the header has"))
                continue
            try:
                reg = parse_row(line, raw, year)
                _check_consistent(reg, by_card, by_code)
            except _RowError as err:
                rejected.append(Rejection(line, str(err)))
                continue
            if reg.card_uid is not None:
                by_card.setdefault(reg.card_uid, reg)
            by_code.setdefault(reg.hes_code, reg)
            accepted.append(reg)
    except csv.Error as err:
        raise RegistrationFileError(f"line {reader.line_num}: not valid CSV: {err}") from err
    return accepted, rejected, rows


def _check_consistent(
    reg: Registration, by_card: dict[str, Registration], by_code: dict[str, Registration]
) -> None:
    if reg.card_uid is not None:
        other = by_card.get(reg.card_uid)
        if other is not None and other.hes_code != reg.hes_code:
            raise _RowError(f"card_uid: the same card is on line {other.line} with another code")
    same_code = by_code.get(reg.hes_code)
    if same_code is not None and (
        same_code.last3,
        same_code.birth_year,
        same_code.groups,
    ) != (reg.last3, reg.birth_year, reg.groups):
        raise _RowError(
            f"hes_code: the same code is on line {same_code.line} with other T.C. digits or age"
        )


_UPSERT_CODES: Final = """
INSERT INTO credentials AS c (key, kind, value_enc, registered_last3, birth_year, groups, source)
SELECT k, 1, v, l, b, g, 'registration'
  FROM unnest($1::bytea[], $2::bytea[], $3::text[], $4::smallint[], $5::smallint[])
       AS u(k, v, l, b, g)
ON CONFLICT (key) DO UPDATE
   SET registered_last3 = excluded.registered_last3, birth_year = excluded.birth_year,
       groups = excluded.groups, source = 'registration'
 WHERE (c.registered_last3, c.birth_year, c.groups, c.source)
       IS DISTINCT FROM (excluded.registered_last3, excluded.birth_year, excluded.groups,
                         'registration')
RETURNING c.key, (xmax = 0) AS added
"""

_UPSERT_CARDS: Final = """
INSERT INTO credentials AS c (key, kind, value_enc, hes_key, registered_last3, birth_year,
                              groups, source)
SELECT k, 2, v, h, l, b, g, 'registration'
  FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::text[], $5::smallint[],
              $6::smallint[]) AS u(k, v, h, l, b, g)
ON CONFLICT (key) DO UPDATE
   SET hes_key = excluded.hes_key, registered_last3 = excluded.registered_last3,
       birth_year = excluded.birth_year, groups = excluded.groups
 WHERE (c.hes_key, c.registered_last3, c.birth_year, c.groups)
       IS DISTINCT FROM (excluded.hes_key, excluded.registered_last3, excluded.birth_year,
                         excluded.groups)
RETURNING c.key, (xmax = 0) AS added
"""


async def _write_chunk(
    conn: Conn,
    cipher: FieldCipher,
    list_key: bytes,
    chunk: Sequence[Registration],
    report: ImportReport,
) -> None:
    codes: dict[bytes, Registration] = {}
    cards: dict[bytes, Registration] = {}
    for reg in chunk:
        codes.setdefault(hes_key(list_key, reg.hes_code), reg)
        if reg.card_uid is not None:
            cards.setdefault(card_key(list_key, reg.card_uid), reg)
    async with conn.transaction():
        await lock_list(conn)
        written_codes = await conn.fetch(
            _UPSERT_CODES,
            list(codes),
            [cipher.seal_text(r.hes_code, context=credential_context(k)) for k, r in codes.items()],
            [r.last3 for r in codes.values()],
            [r.birth_year for r in codes.values()],
            [int(r.groups) for r in codes.values()],
        )
        written_cards = []
        if cards:
            written_cards = await conn.fetch(
                _UPSERT_CARDS,
                list(cards),
                [
                    cipher.seal_text(r.card_uid or "", context=credential_context(k))
                    for k, r in cards.items()
                ],
                [hes_key(list_key, r.hes_code) for r in cards.values()],
                [r.last3 for r in cards.values()],
                [r.birth_year for r in cards.values()],
                [int(r.groups) for r in cards.values()],
            )
    codes_added = sum(1 for r in written_codes if r["added"])
    report.codes_added += codes_added
    report.codes_updated += len(written_codes) - codes_added
    cards_added = sum(1 for r in written_cards if r["added"])
    report.cards_added += cards_added
    report.cards_updated += len(written_cards) - cards_added
    touched = {r["key"] for r in written_codes} | {r["key"] for r in written_cards}
    report.unchanged += sum(
        1
        for reg in chunk
        if hes_key(list_key, reg.hes_code) not in touched
        and (reg.card_uid is None or card_key(list_key, reg.card_uid) not in touched)
    )


async def import_registrations(
    conn: Conn,
    cipher: FieldCipher,
    list_key: bytes,
    text: str,
    *,
    today: dt.date | None = None,
) -> ImportReport:
    """Import the registrations in ``text`` (a CSV file's contents)."""
    year = (today or dt.datetime.now(dt.UTC).date()).year
    accepted, rejected, rows = read_rows(text, year)
    report = ImportReport(rows=rows, rejected=rejected)
    for start in range(0, len(accepted), CHUNK):
        await _write_chunk(conn, cipher, list_key, accepted[start : start + CHUNK], report)
    log.info(
        "registrations imported",
        rows=rows,
        rejected=len(rejected),
        codes_added=report.codes_added,
        codes_updated=report.codes_updated,
        cards_added=report.cards_added,
        cards_updated=report.cards_updated,
    )
    return report


def read_file(path: Path) -> str:
    """The file's text (UTF-8, a byte-order mark allowed)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as err:
        raise RegistrationFileError(f"{path} does not exist") from err
    except UnicodeDecodeError as err:
        raise RegistrationFileError(f"{path} is not UTF-8 text: {err}") from err
    except OSError as err:
        raise RegistrationFileError(f"cannot read {path}: {err}") from err
