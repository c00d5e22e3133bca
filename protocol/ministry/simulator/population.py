"""The people the simulator knows: HES codes with owners, statuses, expiries and planned changes.

A population is generated from a seed (the same seed gives the same codes,
T.C. numbers, names and statuses, whatever the size: a larger population
starts with the smaller one) or loaded from a CSV or JSON file, and can be
written back to either so a demo or a test can register the same people
elsewhere. Scheduled changes turn a code RISKY (or back, or change its
expiry) at a given time; they take effect when a lookup happens at or after
that time.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import heapq
import io
import itertools
import json
import random
import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from protocol import hescode, tckn
from protocol.ministry import wire
from protocol.risk import HealthStatus

#: What "never expires" looks like: the service sends far-future dates for such codes.
FAR_FUTURE: Final = dt.datetime(2099, 12, 31, 20, 59, 59, tzinfo=dt.UTC)
CSV_FIELDS: Final = (
    "hes_code",
    "tckn",
    "first_name",
    "last_name",
    "status",
    "expires_at",
    "is_vaccinated",
    "is_immune",
    "last_negative_test",
    "is_test_data_shared",
)
_CODE_ALPHABET: Final = string.ascii_uppercase + string.digits
_FIRST_NAMES: Final = (
    "AYŞE", "FATMA", "EMİNE", "HATİCE", "ZEYNEP", "ELİF", "MERVE", "BÜŞRA", "ŞEVVAL", "GÜL",
    "MEHMET", "MUSTAFA", "AHMET", "ALİ", "HÜSEYİN", "HASAN", "İBRAHİM", "ÖMER", "YUSUF", "ÇAĞRI",
    "DENİZ", "DERYA", "ÖZGÜR", "UMUT", "EMRE", "BURAK", "SEDA", "İREM", "EGE", "KEREM",
)  # fmt: skip
_LAST_NAMES: Final = (
    "YILMAZ", "KAYA", "DEMİR", "ŞAHİN", "ÇELİK", "YILDIZ", "YILDIRIM", "ÖZTÜRK", "AYDIN",
    "ÖZDEMİR", "ARSLAN", "DOĞAN", "KILIÇ", "ASLAN", "ÇETİN", "KARA", "KOÇ", "KURT", "ÖZKAN",
    "ŞİMŞEK", "POLAT", "ÖZCAN", "KORKMAZ", "ÇAKIR", "ERDOĞAN", "GÜNEŞ", "AKTAŞ", "TEKİN",
)  # fmt: skip


class PopulationError(ValueError):
    """A population file or record is wrong; the message says where and why."""


@dataclass(frozen=True, slots=True)
class PopulationRecord:
    """One person's HES code as the Ministry holds it (full T.C. No, unmasked names)."""

    hes_code: str
    tckn: str
    first_name: str
    last_name: str
    status: HealthStatus
    expires_at: dt.datetime
    is_vaccinated: bool | None = None
    is_immune: bool | None = None
    last_negative_test: dt.datetime | None = None
    is_test_data_shared: bool | None = None

    def __post_init__(self) -> None:
        if not hescode.is_valid(self.hes_code):
            raise PopulationError(f"hes_code: {self.hes_code!r} is not a normalised HES code")
        try:
            tckn.validate(self.tckn)
        except tckn.InvalidTckn as err:
            raise PopulationError(f"tckn: {err.reason}") from err
        for name, moment in (
            ("expires_at", self.expires_at),
            ("last_negative_test", self.last_negative_test),
        ):
            if moment is not None and moment.tzinfo is None:
                raise PopulationError(f"{name}: the time needs a UTC offset")

    def expired(self, now: dt.datetime) -> bool:
        """Whether the code has expired at ``now``."""
        return self.expires_at <= now


@dataclass(frozen=True, slots=True)
class ScheduledChange:
    """At ``at``, set the code's status and/or expiry (``None`` leaves it as it is)."""

    at: dt.datetime
    hes_code: str
    status: HealthStatus | None = None
    expires_at: dt.datetime | None = None

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise PopulationError("at: the time needs a UTC offset")
        if self.status is None and self.expires_at is None:
            raise PopulationError("a scheduled change needs a status or an expiry")


class Population:
    """The codes the simulator answers for, with their pending changes.

    Lookups are O(1); due changes are applied on the way in, in time order.
    Owned by one simulator app (one event loop); not thread-safe.
    """

    def __init__(
        self, records: Iterable[PopulationRecord] = (), schedule: Iterable[ScheduledChange] = ()
    ) -> None:
        self._records: dict[str, PopulationRecord] = {}
        for record in records:
            if record.hes_code in self._records:
                raise PopulationError(f"hes_code {record.hes_code} appears twice")
            self._records[record.hes_code] = record
        self._pending: list[tuple[dt.datetime, int, ScheduledChange]] = []
        self._order = itertools.count()
        for change in schedule:
            self.schedule(change)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, code: object) -> bool:
        return code in self._records

    def __iter__(self) -> Iterator[PopulationRecord]:
        return iter(list(self._records.values()))

    def __repr__(self) -> str:
        return f"<Population {len(self._records)} codes, {len(self._pending)} changes pending>"

    def codes(self) -> list[str]:
        """Every code, in insertion order."""
        return list(self._records)

    def get(self, code: str) -> PopulationRecord | None:
        """The record as it stands, without applying due changes."""
        return self._records.get(code)

    def lookup(self, code: str, now: dt.datetime) -> PopulationRecord | None:
        """The record for ``code`` at ``now``, after applying every change due by then."""
        self.apply_due(now)
        return self._records.get(code)

    def put(self, record: PopulationRecord) -> None:
        """Add a record or replace the one with the same code."""
        self._records[record.hes_code] = record

    def schedule(self, change: ScheduledChange) -> None:
        """Plan a change; the code must exist."""
        if change.hes_code not in self._records:
            raise PopulationError(f"cannot schedule a change for unknown code {change.hes_code}")
        heapq.heappush(self._pending, (change.at, next(self._order), change))

    def pending(self) -> list[ScheduledChange]:
        """Changes not applied yet, in the order they will be."""
        return [change for _, _, change in sorted(self._pending)]

    def apply_due(self, now: dt.datetime) -> int:
        """Apply every change due at ``now``; return how many."""
        applied = 0
        while self._pending and self._pending[0][0] <= now:
            _, _, change = heapq.heappop(self._pending)
            record = self._records[change.hes_code]
            self._records[change.hes_code] = dataclasses.replace(
                record,
                status=change.status if change.status is not None else record.status,
                expires_at=change.expires_at
                if change.expires_at is not None
                else record.expires_at,
            )
            applied += 1
        return applied

    @classmethod
    def generate(
        cls,
        seed: int,
        size: int,
        *,
        now: dt.datetime | None = None,
        risky_rate: float = 0.05,
        expired_rate: float = 0.02,
        never_expires_rate: float = 0.1,
    ) -> Population:
        """``size`` people from ``seed``.

        Codes, T.C. numbers, names, statuses and plus fields depend only on
        the seed; expiries are offsets from ``now`` (default: this minute),
        ``expired_rate`` of them in the past and ``never_expires_rate`` at
        :data:`FAR_FUTURE`.
        """
        if size < 0:
            raise PopulationError("size must not be negative")
        for name, rate in (
            ("risky_rate", risky_rate),
            ("expired_rate", expired_rate),
            ("never_expires_rate", never_expires_rate),
        ):
            if not 0.0 <= rate <= 1.0:
                raise PopulationError(f"{name} must be between 0 and 1")
        if expired_rate + never_expires_rate > 1.0:
            raise PopulationError("expired_rate + never_expires_rate must not exceed 1")
        reference = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        reference = reference.replace(second=0, microsecond=0)
        rng = random.Random(seed)  # noqa: S311 - made-up people, not secrets
        seen: set[str] = set()
        records = []
        for _ in range(size):
            code = "".join(rng.choices(_CODE_ALPHABET, k=hescode.HES_CODE_LENGTH))
            while code in seen:
                code = "".join(rng.choices(_CODE_ALPHABET, k=hescode.HES_CODE_LENGTH))
            seen.add(code)
            number = tckn.make(str(rng.randint(1, 9)) + "".join(rng.choices(string.digits, k=8)))
            first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
            status = HealthStatus.RISKY if rng.random() < risky_rate else HealthStatus.RISKLESS
            draw, days = rng.random(), rng.randint(1, 365)
            if draw < expired_rate:
                expires_at = reference - dt.timedelta(days=min(days, 60))
            elif draw < expired_rate + never_expires_rate:
                expires_at = FAR_FUTURE
            else:
                expires_at = reference + dt.timedelta(days=days, hours=rng.randint(0, 23))
            vaccinated = rng.random() < 0.7
            immune_draw, shared_draw, test_days = rng.random(), rng.random(), rng.randint(1, 30)
            shared = shared_draw < 0.6
            records.append(
                PopulationRecord(
                    hes_code=code,
                    tckn=number,
                    first_name=first,
                    last_name=last,
                    status=status,
                    expires_at=expires_at,
                    is_vaccinated=vaccinated,
                    is_immune=(immune_draw < 0.8) if vaccinated else None,
                    last_negative_test=(
                        reference - dt.timedelta(days=test_days) if shared else None
                    ),
                    is_test_data_shared=shared,
                )
            )
        return cls(records)

    @classmethod
    def load(cls, path: Path) -> Population:
        """Read a ``.csv`` or ``.json`` population file."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise PopulationError(f"cannot read population file {path}: {err}") from err
        except UnicodeDecodeError as err:
            raise PopulationError(f"{path} is not UTF-8 text") from err
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return cls.from_csv(text, source=str(path))
        if suffix == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise PopulationError(f"{path} is not valid JSON: {err}") from err
            return cls.from_json(data, source=str(path))
        raise PopulationError(f"{path}: a population file ends in .csv or .json")

    def dump(self, path: Path) -> None:
        """Write the population to a ``.csv`` (records only) or ``.json`` file."""
        suffix = path.suffix.lower()
        if suffix == ".csv":
            text = self.to_csv()
        elif suffix == ".json":
            text = json.dumps(self.to_json(), ensure_ascii=False, indent=1) + "\n"
        else:
            raise PopulationError(f"{path}: a population file ends in .csv or .json")
        path.write_text(text, encoding="utf-8")

    @classmethod
    def from_csv(cls, text: str, *, source: str = "CSV") -> Population:
        """Records from CSV text with a header row naming :data:`CSV_FIELDS`."""
        reader = csv.DictReader(io.StringIO(text))
        missing = [name for name in CSV_FIELDS[:6] if name not in (reader.fieldnames or ())]
        if missing:
            raise PopulationError(f"{source}: the header lacks {', '.join(missing)}")
        records = []
        for row in reader:
            records.append(record_from_mapping(row, f"{source} line {reader.line_num}"))
        return cls._checked(records, (), source)

    @classmethod
    def from_json(cls, data: Any, *, source: str = "JSON") -> Population:
        """Records from a list of objects, or ``{"records": [...], "schedule": [...]}``."""
        if isinstance(data, list):
            data = {"records": data}
        if not isinstance(data, Mapping) or not isinstance(data.get("records"), list):
            raise PopulationError(f"{source}: expected a list of records or an object with one")
        schedule_raw = data.get("schedule", [])
        if not isinstance(schedule_raw, list):
            raise PopulationError(f"{source}: schedule must be a list")
        records = [
            record_from_mapping(row, f"{source} record {i}")
            for i, row in enumerate(data["records"], 1)
        ]
        changes = [
            change_from_mapping(row, f"{source} schedule {i}")
            for i, row in enumerate(schedule_raw, 1)
        ]
        return cls._checked(records, changes, source)

    @classmethod
    def _checked(
        cls, records: list[PopulationRecord], changes: Iterable[ScheduledChange], source: str
    ) -> Population:
        try:
            return cls(records, changes)
        except PopulationError as err:
            raise PopulationError(f"{source}: {err}") from err

    def to_csv(self) -> str:
        """The records as CSV text with a header row."""
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for record in self._records.values():
            writer.writerow({k: _csv_value(v) for k, v in record_to_mapping(record).items()})
        return out.getvalue()

    def to_json(self) -> dict[str, Any]:
        """The records and pending changes as JSON-ready data."""
        return {
            "records": [record_to_mapping(record) for record in self._records.values()],
            "schedule": [change_to_mapping(change) for change in self.pending()],
        }


def record_to_mapping(record: PopulationRecord) -> dict[str, Any]:
    """A record as JSON-ready data (the CSV columns, typed)."""
    return {
        "hes_code": record.hes_code,
        "tckn": record.tckn,
        "first_name": record.first_name,
        "last_name": record.last_name,
        "status": record.status.name,
        "expires_at": wire.format_time(record.expires_at),
        "is_vaccinated": record.is_vaccinated,
        "is_immune": record.is_immune,
        "last_negative_test": (
            wire.format_time(record.last_negative_test) if record.last_negative_test else None
        ),
        "is_test_data_shared": record.is_test_data_shared,
    }


def record_from_mapping(row: Any, where: str) -> PopulationRecord:
    """A record from a JSON object or a CSV row; errors name ``where`` and the field."""
    if not isinstance(row, Mapping):
        raise PopulationError(f"{where}: expected an object")
    try:
        return PopulationRecord(
            hes_code=_code(row.get("hes_code")),
            tckn=_text(row.get("tckn"), "tckn"),
            first_name=_text(row.get("first_name"), "first_name"),
            last_name=_text(row.get("last_name"), "last_name"),
            status=status_from_text(row.get("status")),
            expires_at=_time(row.get("expires_at"), "expires_at"),
            is_vaccinated=_flag(row.get("is_vaccinated"), "is_vaccinated"),
            is_immune=_flag(row.get("is_immune"), "is_immune"),
            last_negative_test=_optional_time(row.get("last_negative_test"), "last_negative_test"),
            is_test_data_shared=_flag(row.get("is_test_data_shared"), "is_test_data_shared"),
        )
    except PopulationError as err:
        raise PopulationError(f"{where}: {err}") from err


def change_to_mapping(change: ScheduledChange) -> dict[str, Any]:
    """A scheduled change as JSON-ready data."""
    return {
        "hes_code": change.hes_code,
        "at": wire.format_time(change.at),
        "status": change.status.name if change.status is not None else None,
        "expires_at": wire.format_time(change.expires_at) if change.expires_at else None,
    }


def change_from_mapping(row: Any, where: str, *, now: dt.datetime | None = None) -> ScheduledChange:
    """A change from ``{"hes_code", "at" | "in_s", "status"?, "expires_at"?}``.

    ``in_s`` (seconds from ``now``) needs ``now``.
    """
    if not isinstance(row, Mapping):
        raise PopulationError(f"{where}: expected an object")
    try:
        return _change(row, now)
    except PopulationError as err:
        raise PopulationError(f"{where}: {err}") from err


def _change(row: Mapping[str, Any], now: dt.datetime | None) -> ScheduledChange:
    unknown = sorted(set(row) - {"hes_code", "at", "in_s", "status", "expires_at"})
    if unknown:
        raise PopulationError(f"unknown field {unknown[0]!r}")
    if ("at" in row) == ("in_s" in row):
        raise PopulationError("give exactly one of at or in_s")
    if "at" in row:
        at = _time(row["at"], "at")
    else:
        delay = row["in_s"]
        if now is None or isinstance(delay, bool) or not isinstance(delay, int | float):
            raise PopulationError("in_s must be a number of seconds")
        at = now + dt.timedelta(seconds=delay)
    status_raw = row.get("status")
    return ScheduledChange(
        at=at,
        hes_code=_code(row.get("hes_code")),
        status=status_from_text(status_raw) if status_raw is not None else None,
        expires_at=_optional_time(row.get("expires_at"), "expires_at"),
    )


def status_from_text(value: Any) -> HealthStatus:
    """``RISKY`` or ``RISKLESS`` (any case) as a :class:`HealthStatus`."""
    if isinstance(value, str) and value.strip().upper() in (wire.RISKY, wire.RISKLESS):
        return HealthStatus[value.strip().upper()]
    raise PopulationError(f"status: expected RISKY or RISKLESS, got {value!r}")


def _code(value: Any) -> str:
    try:
        return hescode.parse(_text(value, "hes_code"))
    except hescode.InvalidHesCode as err:
        raise PopulationError(f"hes_code: {err.reason}") from err


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PopulationError(f"{name}: expected a non-empty string")
    return value.strip()


def _time(value: Any, name: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(_text(value, name))
    except ValueError as err:
        raise PopulationError(f"{name}: not an ISO 8601 time: {value!r}") from err
    if moment.tzinfo is None:
        raise PopulationError(f"{name}: the time needs a UTC offset")
    return moment.astimezone(dt.UTC)


def _optional_time(value: Any, name: str) -> dt.datetime | None:
    return None if value in (None, "") else _time(value, name)


def _flag(value: Any, name: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "null"):
            return None
        if text in ("true", "false"):
            return text == "true"
    raise PopulationError(f"{name}: expected true, false or empty, got {value!r}")


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
