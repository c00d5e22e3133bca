"""The simulator's truth: who exists, what the Ministry says of them when, and what that means.

Built from what the running simulator itself reports (its population and
scheduled changes) and the registrations the depot imported, plus the
boarding policy the demo wrote. :meth:`World.truth` says which reason a
credential deserves at a moment, worked out here from those facts alone (not
with the validator's or the depot's code), so the audit compares the system
with an independent account of what it should have said.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from deploy.demo.configs import DemoPolicy
from protocol.reasons import Reason
from protocol.risk import ISTANBUL, HealthStatus

#: Age-group limits by year of birth (docs/depot.md, "The risk list").
AGE_65: Final = 65
AGE_20: Final = 20


class WorldError(ValueError):
    """The simulator's or the registrations' data is not what the demo expects."""


class Medium(enum.StrEnum):
    """How a credential was presented."""

    QR = "qr"
    CARD = "card"
    KEYPAD = "keypad"
    #: A frame the scanner sent that is not any credential.
    GARBAGE = "garbage"
    #: Keypad input the validator must refuse (an odd last T.C. digit).
    BAD_KEYPAD = "bad_keypad"


@dataclass(frozen=True, slots=True)
class Presented:
    """What a rider showed: a HES code (QR or keypad), a card, or something unreadable."""

    medium: Medium
    hes_code: str | None = None
    card_uid: str | None = None
    #: The T.C. digits given with it (typed, or from a QR's valid T.C. field).
    tckn_last3: str | None = None

    @property
    def readable(self) -> bool:
        """Whether a validator can read a credential from it at all."""
        return self.medium not in (Medium.GARBAGE, Medium.BAD_KEYPAD)


@dataclass(frozen=True, slots=True)
class Change:
    """A scheduled change of a code's status and/or expiry, at ``at``."""

    at: dt.datetime
    status: HealthStatus | None = None
    expires_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Person:
    """One HES code's owner as the Ministry knows them, and their registration if any."""

    hes_code: str
    tckn: str
    status: HealthStatus
    expires_at: dt.datetime
    changes: tuple[Change, ...] = ()
    #: The registered card (every registration in the demo links one), or ``None``.
    card_uid: str | None = None
    birth_year: int | None = None

    @property
    def registered(self) -> bool:
        """Whether the depot imported a registration for this code."""
        return self.card_uid is not None

    @property
    def last3(self) -> str:
        """The last three digits of the T.C. Kimlik No."""
        return self.tckn[-3:]

    def state_at(self, moment: dt.datetime) -> tuple[HealthStatus, dt.datetime]:
        """Status and expiry at ``moment``, every change due by then applied in order."""
        status, expires = self.status, self.expires_at
        for change in sorted(self.changes, key=lambda c: c.at):
            if change.at > moment:
                break
            status = change.status if change.status is not None else status
            expires = change.expires_at if change.expires_at is not None else expires
        return status, expires


@dataclass(frozen=True, slots=True)
class World:
    """Everyone the Ministry knows, the registrations, the policy: the truth to check against."""

    people: Mapping[str, Person]
    cards: Mapping[str, str]
    policy: DemoPolicy
    #: The year age groups are counted in (Istanbul), as the depot counts them.
    year: int
    unregistered: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def build(
        cls,
        population: Mapping[str, Any],
        registrations: Iterable[Mapping[str, str]],
        policy: DemoPolicy,
        now: dt.datetime,
    ) -> World:
        """From ``GET /admin/population`` JSON and the registration rows the depot imported."""
        people = _people(population)
        cards: dict[str, str] = {}
        for row in registrations:
            code, uid = row["hes_code"], row["card_uid"].upper()
            if code not in people:
                raise WorldError(f"a registration names {code}, which the Ministry does not know")
            people[code] = replace(people[code], card_uid=uid, birth_year=int(row["birth_year"]))
            cards[uid] = code
        unregistered = frozenset(c for c, p in people.items() if not p.registered)
        return cls(people, cards, policy, now.astimezone(ISTANBUL).year, unregistered)

    def with_schedule(self, population: Mapping[str, Any]) -> World:
        """The same world with the scheduled changes the simulator now reports."""
        changes = _schedule(population)
        people = {
            code: replace(person, changes=changes.get(code, ()))
            for code, person in self.people.items()
        }
        return replace(self, people=people)

    def person_of(self, presented: Presented) -> Person | None:
        """Whose credential it is, as far as the Ministry and the registrations know."""
        if presented.medium is Medium.CARD:
            code = self.cards.get((presented.card_uid or "").upper())
            return None if code is None else self.people.get(code)
        if presented.hes_code is None:
            return None
        return self.people.get(presented.hes_code)

    def restricted(self, person: Person) -> bool:
        """Whether the person is in an age group the policy restricts (65+ or under 20)."""
        if person.birth_year is None:
            return False
        age = self.year - person.birth_year
        return age >= AGE_65 or age < AGE_20

    def truth(self, presented: Presented, moment: dt.datetime) -> Reason:
        """The reason the credential deserves at ``moment`` when nothing is out of reach."""
        if not presented.readable:
            return Reason.UNREADABLE
        person = self.person_of(presented)
        if person is None:
            return Reason.NOT_FOUND
        status, expires_at = person.state_at(moment)
        # The Ministry answers "expired" before anything else (no digits come with it).
        if expires_at <= moment:
            return Reason.EXPIRED
        given = presented.tckn_last3
        if given is not None and given != person.last3:
            return Reason.TCKN_MISMATCH
        if status is HealthStatus.RISKY:
            return Reason.RISKY
        if self.restricted(person) and not self.policy.restricted_may_board(moment):
            return Reason.TIME_WINDOW
        return Reason.OK


def _time(text: object, where: str) -> dt.datetime:
    if not isinstance(text, str):
        raise WorldError(f"{where}: expected an ISO 8601 time")
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as err:
        raise WorldError(f"{where}: {text!r} is not an ISO 8601 time") from err
    if moment.tzinfo is None:
        raise WorldError(f"{where}: the time has no offset")
    return moment


def _people(population: Mapping[str, Any]) -> dict[str, Person]:
    records = population.get("records")
    if not isinstance(records, list):
        raise WorldError("the population has no records list")
    people: dict[str, Person] = {}
    for i, row in enumerate(records):
        try:
            code = row["hes_code"]
            people[code] = Person(
                hes_code=code,
                tckn=row["tckn"],
                status=HealthStatus[row["status"]],
                expires_at=_time(row["expires_at"], f"records[{i}].expires_at"),
            )
        except (KeyError, TypeError) as err:
            raise WorldError(f"records[{i}]: missing or wrong field {err}") from err
    return _with_changes(people, _schedule(population))


def _schedule(population: Mapping[str, Any]) -> dict[str, tuple[Change, ...]]:
    out: dict[str, list[Change]] = {}
    for i, row in enumerate(population.get("schedule") or ()):
        where = f"schedule[{i}]"
        try:
            status = row.get("status")
            expires = row.get("expires_at")
            change = Change(
                at=_time(row["at"], f"{where}.at"),
                status=HealthStatus[status] if status else None,
                expires_at=_time(expires, f"{where}.expires_at") if expires else None,
            )
            out.setdefault(row["hes_code"], []).append(change)
        except (KeyError, TypeError, AttributeError) as err:
            raise WorldError(f"{where}: missing or wrong field {err}") from err
    return {code: tuple(changes) for code, changes in out.items()}


def _with_changes(
    people: dict[str, Person], changes: Mapping[str, tuple[Change, ...]]
) -> dict[str, Person]:
    for code, planned in changes.items():
        if code in people:
            people[code] = replace(people[code], changes=planned)
    return people


def registration_rows(text: str) -> list[dict[str, str]]:
    """The rows of a registration CSV (``card_uid,hes_code,tckn,birth_year``)."""
    reader = csv.DictReader(io.StringIO(text))
    wanted = {"card_uid", "hes_code", "tckn", "birth_year"}
    if not wanted <= set(reader.fieldnames or ()):
        raise WorldError(f"the registrations need the columns {', '.join(sorted(wanted))}")
    return [dict(row) for row in reader]


def registration_csv(rows: Iterable[Mapping[str, str]]) -> str:
    """Rows back as a registration CSV with a header."""
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=("card_uid", "hes_code", "tckn", "birth_year"), lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row[k] for k in ("card_uid", "hes_code", "tckn", "birth_year")})
    return out.getvalue()
