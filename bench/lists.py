"""Risk lists to measure with: signed snapshot files written by the real writer, kept between runs.

A list of ``n`` entries holds :data:`CODES` HES codes and :data:`CARDS`
cards whose credentials the decision benchmark presents (keys made with
:data:`LIST_KEY`, the way the depot makes them), and random keys for the
rest. Writing 10 million entries through :class:`protocol.snapshot.SnapshotWriter`
takes the better part of a minute, so each file is kept in the data
directory with the key that signed it and reused while it still checks out.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from bench.measure import say
from protocol import tckn
from protocol.credentials import CredentialKind, credential_key
from protocol.listsign import KeyFormatError, ListSigner, ListVerifier
from protocol.risk import Groups, HealthStatus, ListEntry
from protocol.snapshot import Snapshot, SnapshotError, SnapshotWriter
from validator.risklist import SNAPSHOT_NAME

#: Bump when the entries a list holds change, so old cached files are not reused.
RECIPE: Final = 1
#: The list key every bench validator is "enrolled" with.
LIST_KEY: Final = bytes(range(32))
KEY_ID: Final = "bench-1"
#: Credentials on every list that the decision benchmark presents.
CODES: Final = 10_000
CARDS: Final = 2_000
#: An expiry day far ahead (2052), so cached lists stay valid for years.
EXPIRY_DAY: Final = 30_000
SUFFIX: Final = ".hgsnap"


def code_of(i: int) -> str:
    """The ``i``-th bench HES code (10 of A-Z0-9)."""
    return f"B{i:09d}"


def tckn_of(i: int) -> str:
    """A valid T.C. Kimlik No for the owner of code ``i``."""
    return tckn.make(f"{100_000_000 + i}")


def card_of(i: int) -> str:
    """The ``i``-th bench card UID (4 bytes, upper-case hex)."""
    return f"{0xC0000000 + i:08X}"


def _known_entries() -> Iterator[ListEntry]:
    """The codes and cards the decision benchmark presents: all riskless, with T.C. digits."""
    for i in range(CODES):
        key = credential_key(LIST_KEY, CredentialKind.HES_CODE, code_of(i))
        yield ListEntry(key, HealthStatus.RISKLESS, EXPIRY_DAY, tckn_of(i)[-3:], Groups.NONE)
    for i in range(CARDS):
        key = credential_key(LIST_KEY, CredentialKind.CARD, card_of(i))
        yield ListEntry(key, HealthStatus.RISKLESS, EXPIRY_DAY, tckn_of(i)[-3:], Groups.NONE)


def _random_entries(count: int, seed: int) -> Iterator[ListEntry]:
    """``count`` entries with random keys: 2% risky, some without expiry or T.C. digits."""
    rng = np.random.default_rng(seed)
    statuses = (HealthStatus.RISKLESS, HealthStatus.RISKY)
    groups = (Groups.NONE, Groups.AGE_65_PLUS, Groups.UNDER_20)
    last3 = [f"{d:03d}" for d in range(0, 1000, 2)]
    chunk = 1 << 18
    for start in range(0, count, chunk):
        n = min(chunk, count - start)
        raw = rng.integers(0, 2**64, size=n, dtype=np.uint64, endpoint=False)
        keys = raw.astype(">u8").tobytes()
        risky = (rng.random(n) < 0.02).tolist()
        group = rng.integers(0, 8, size=n).tolist()
        digits = rng.integers(0, len(last3) + 50, size=n).tolist()
        for i in range(n):
            g = group[i]
            d = digits[i]
            yield ListEntry(
                keys[8 * i : 8 * i + 8],
                statuses[risky[i]],
                None if g == 7 else EXPIRY_DAY,
                last3[d] if d < len(last3) else None,
                groups[g] if g < 3 else Groups.NONE,
            )


@dataclass(frozen=True, slots=True)
class BenchList:
    """A cached list file and how it is checked."""

    path: Path
    count: int
    verifier: ListVerifier


class ListStore:
    """Snapshot files of given sizes in ``directory``, signed by one kept key."""

    def __init__(self, directory: Path, *, fresh: bool = False) -> None:
        self._dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        key_path = directory / f"{KEY_ID}.pem"
        signer: ListSigner | None = None
        if key_path.exists() and not fresh:
            try:
                signer = ListSigner.load(key_path, KEY_ID)
            except KeyFormatError:
                signer = None
        if signer is None:
            signer = ListSigner.generate(KEY_ID)
            signer.save(key_path)
            for old in directory.glob(f"list-*{SUFFIX}"):
                old.unlink()
        self.signer = signer
        self.verifier = signer.verifier()

    def get(self, count: int) -> BenchList:
        """The list of ``count`` entries, written now unless a good one is kept."""
        path = self._dir / f"list-r{RECIPE}-{count}{SUFFIX}"
        if path.exists() and self._usable(path, count):
            return BenchList(path, count, self.verifier)
        say(f"writing a {count:,}-entry risk list with the snapshot writer (kept for next time)")
        known = CODES + CARDS
        if count < known:
            raise ValueError(f"a bench list holds at least {known} entries")

        def entries() -> Iterator[ListEntry]:
            yield from _known_entries()
            yield from _random_entries(count - known, seed=count)

        with SnapshotWriter(path, list_version=count, signer=self.signer) as writer:
            writer.add_many(entries())
        return BenchList(path, count, self.verifier)

    def _usable(self, path: Path, count: int) -> bool:
        try:
            with Snapshot.open(path, self.verifier, verify_body=False) as snapshot:
                return snapshot.count == count
        except (SnapshotError, OSError):
            return False


def place(blist: BenchList, data_dir: Path) -> None:
    """Put a list where a validator keeps it (a hard link: the file is never written to)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    target = data_dir / SNAPSHOT_NAME
    target.unlink(missing_ok=True)
    try:
        os.link(blist.path, target)
    except OSError:
        shutil.copyfile(blist.path, target)
