"""The simulated people as the municipality's card registrations, for demos and end-to-end tests.

The Ministry knows nothing of transit cards or birth years; a municipality
links a card to a HES code and a T.C. No when a rider registers. This writes
that file (the columns ``hes-depot import-registrations`` reads) for a
simulated population, with a card UID and a birth year derived from each
HES code, so the same population always gives the same cards.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from protocol.ministry.simulator.population import Population, PopulationRecord

REGISTRATION_FIELDS: Final = ("card_uid", "hes_code", "tckn", "birth_year")
#: Birth years are spread over these (both ends included): riders from 11 to 86 in 2026.
FIRST_BIRTH_YEAR: Final = 1940
LAST_BIRTH_YEAR: Final = 2015


@dataclass(frozen=True, slots=True)
class Registration:
    """One rider's card linked to their HES code."""

    card_uid: str
    hes_code: str
    tckn: str
    birth_year: int


def registration_of(record: PopulationRecord) -> Registration:
    """The card (a 7-byte UID, as on MIFARE cards) and birth year derived from the code."""
    digest = hashlib.sha256(f"hesgate-sim-card:{record.hes_code}".encode()).digest()
    span = LAST_BIRTH_YEAR - FIRST_BIRTH_YEAR + 1
    return Registration(
        card_uid=digest[:7].hex().upper(),
        hes_code=record.hes_code,
        tckn=record.tckn,
        birth_year=FIRST_BIRTH_YEAR + int.from_bytes(digest[7:9], "big") % span,
    )


def registrations_csv(population: Population) -> str:
    """Every person as a registration row, with a header."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REGISTRATION_FIELDS)
    for record in population:
        reg = registration_of(record)
        writer.writerow((reg.card_uid, reg.hes_code, reg.tckn, reg.birth_year))
    return out.getvalue()


def write_registrations(population: Population, path: Path) -> None:
    """Write :func:`registrations_csv` to ``path``."""
    path.write_text(registrations_csv(population), encoding="utf-8")
