"""Decision latency: scanner frame bytes in, answer out, the tap committed to SQLite in between.

The validator's own :class:`validator.gate.Gate` over its
:class:`validator.risklist.RiskList`, :class:`validator.policy.PolicyStore` (a
signed policy on disk) and :class:`validator.queue.TapQueue` (WAL,
``synchronous=FULL``), in a data directory on the bench's disk. Every frame
is a credential the list holds, so each answer is a local decision; the
online check (a real depot client, pointed at a closed port) is never asked.
Reading the frame off the serial port is not part of the measure: the gate
is handed the frame's bytes as the scanner task would.

Reference: a bare SQLite insert and commit of a row of the same shape, same
journal mode and synchronous setting, same disk: the floor of "recorded
durably before the answer is shown".
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
import time
from pathlib import Path
from typing import Final

import numpy as np

from bench.context import BenchFailure, Context
from bench.lists import CARDS, CODES, LIST_KEY, card_of, code_of, place, tckn_of
from bench.measure import percentile, say
from bench.table import Bound, Reference, Result, Target
from protocol.codec import encode
from protocol.listsign import ListSigner, seal
from protocol.messages import PROTOCOL_VERSION, Behaviour, Policy
from protocol.reasons import DecidedBy
from validator.answer import Answer
from validator.app import TAPS_DB
from validator.depot_client import DepotClient
from validator.gate import Gate
from validator.policy import POLICY_NAME, PolicyStore
from validator.queue import TapQueue
from validator.risklist import RiskList

SECTION: Final = "decision"
P99_TARGET: Final = Target(Bound.BELOW, 5.0)


def frames(count: int, seed: int) -> list[bytes]:
    """Scanner frames as they come off the wire: 70% app QR, 10% bare code, 20% card."""
    rng = np.random.default_rng(seed)
    out = []
    for pick, index in zip(
        rng.random(count).tolist(), rng.integers(0, CODES, size=count).tolist(), strict=True
    ):
        if pick < 0.7:
            out.append(f"]Q1{tckn_of(index)}|{code_of(index)}\r\n".encode("ascii"))
        elif pick < 0.8:
            code = code_of(index)
            out.append(f"{code[:4]}-{code[4:8]}-{code[8:]}\r\n".encode("ascii"))
        else:
            out.append(f"CARD:{card_of(index % CARDS)}\r\n".encode("ascii"))
    return out


def _write_policy(data_dir: Path, signer: ListSigner) -> None:
    """A signed policy where the validator keeps the one it fetched."""
    policy = Policy(
        v=PROTOCOL_VERSION,
        version=1,
        issued_ms=int(time.time() * 1000),
        timezone="Europe/Istanbul",
        rules=[],
        offline_unknown=Behaviour.ALLOW_FLAGGED,
        stale_list=Behaviour.ALLOW_FLAGGED,
        max_list_age_s=86400,
    )
    (data_dir / POLICY_NAME).write_bytes(encode(seal(signer, encode(policy))))


def _closed_port() -> int:
    """A local port nothing listens on (the depot is never asked)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BareTable:
    """A tap-shaped SQLite table with the queue's settings (WAL, ``synchronous=FULL``)."""

    _INSERT: Final = (
        "INSERT INTO taps (time_ms, method, key, decision, reason, decided_by, list_version,"
        " latency_us, vehicle, route, trip, lat, lon) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
        " RETURNING seq"
    )

    def __init__(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE taps (seq INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL,"
            " method INTEGER, key BLOB, decision INTEGER NOT NULL, reason INTEGER NOT NULL,"
            " decided_by INTEGER NOT NULL, list_version INTEGER NOT NULL,"
            " latency_us INTEGER NOT NULL, vehicle TEXT NOT NULL, route TEXT NOT NULL,"
            " trip TEXT NOT NULL, lat REAL, lon REAL)"
        )

    def commit_one(self) -> float:
        """Milliseconds to insert and commit one row (autocommit: one transaction)."""
        now = int(time.time() * 1000)
        row = (now, 1, b"\x01" * 8, 1, 0, 1, 7, 850, "34 BEN 001", "500T", "T-0800", None, None)
        started = time.perf_counter_ns()
        self._db.execute(self._INSERT, row).fetchone()
        return (time.perf_counter_ns() - started) / 1e6

    def close(self) -> None:
        """Close the database."""
        self._db.close()


async def run(ctx: Context) -> list[Result]:
    """Latency percentiles of local decisions through the gate."""
    settings = ctx.config.decision
    blist = ctx.lists.get(settings.list_entries)
    say(f"decision: {settings.taps:,} taps against a {blist.count:,}-entry list")
    data_dir = ctx.run_dir / "decision"
    shutil.rmtree(data_dir, ignore_errors=True)
    place(blist, data_dir)
    _write_policy(data_dir, ctx.lists.signer)
    risk_list = RiskList(data_dir, blist.verifier)
    await risk_list.load()
    await risk_list.mark_fresh()
    policy = PolicyStore(data_dir, blist.verifier)
    policy.load()
    queue = TapQueue(data_dir / TAPS_DB)
    client = DepotClient(
        base_url=f"http://127.0.0.1:{_closed_port()}",
        device_id="bench-validator",
        secret=bytes(32),
        request_timeout_s=1.0,
    )
    shown: list[Answer] = []
    gate = Gate(
        list_key=LIST_KEY,
        risk_list=risk_list,
        policy=policy,
        checker=client,
        queue=queue,
        show=shown.append,
        vehicle="34 BEN 001",
        route="500T",
        trip="T-0800",
    )
    latencies: list[float] = []
    before_commit: list[float] = []
    bare: list[float] = []
    table = BareTable(data_dir / "bare.db")
    try:
        for i, frame in enumerate(frames(settings.warmup + settings.taps, seed=7)):
            started = time.perf_counter_ns()
            answer = await gate.tap_frame(frame)
            elapsed_ms = (time.perf_counter_ns() - started) / 1e6
            if answer.seq is None or answer.storage_error is not None:
                raise BenchFailure(f"tap not stored: {answer.storage_error}")
            if answer.decided_by is not DecidedBy.LOCAL_LIST:
                raise BenchFailure(f"frame {i} was not decided from the list: {answer.reason!r}")
            # Taking turns: a burst of load from elsewhere hits both series alike.
            bare_ms = table.commit_one()
            if i >= settings.warmup:
                latencies.append(elapsed_ms)
                before_commit.append(answer.latency_us / 1000)
                bare.append(bare_ms)
        if queue.last_seq != settings.warmup + settings.taps:
            raise BenchFailure(f"{queue.last_seq} taps stored, expected more")
    finally:
        table.close()
        queue.close()
        await client.close()
        await risk_list.close()
    shutil.rmtree(data_dir, ignore_errors=True)
    return [
        Result(
            SECTION,
            "frame in to answer out, p50 (tap committed)",
            percentile(latencies, 50),
            "ms",
            Reference("bare SQLite insert+commit p50", percentile(bare, 50)),
        ),
        Result(
            SECTION,
            "frame in to answer out, p99 (tap committed)",
            percentile(latencies, 99),
            "ms",
            Reference("bare SQLite insert+commit p99", percentile(bare, 99)),
            targets=(P99_TARGET,),
        ),
        Result(
            SECTION,
            "frame in to answer out, max",
            max(latencies),
            "ms",
            Reference("bare SQLite insert+commit max", max(bare)),
        ),
        Result(
            SECTION,
            "decided, before the commit, p99 (gate's latency_us)",
            percentile(before_commit, 99),
            "ms",
            Reference("frame in to answer out p99", percentile(latencies, 99)),
        ),
    ]
