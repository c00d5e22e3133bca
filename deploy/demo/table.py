"""The live table: each validator's answers, backlog and list version, redrawn every second.

:func:`render` is a pure function of a :class:`Board` (what was last read
from each validator's ``GET /api/status``, the depot's ``GET /v1/fleet`` and
the passengers' tally); :class:`LiveTable` polls and redraws it with plain
ANSI (home, clear, colours) on a terminal, and prints a short line every few
seconds when the output is not one (a log, CI).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

from deploy.demo.clients import ServiceError
from deploy.demo.scenario import Event, EventKind, Run
from protocol.reasons import Colour, DecidedBy, Decision, Reason, colour_of

_ANSI: Final = {
    Colour.GREEN: "\x1b[32m",
    Colour.YELLOW: "\x1b[33m",
    Colour.RED: "\x1b[31m",
}
_BOLD: Final = "\x1b[1m"
_DIM: Final = "\x1b[2m"
_RESET: Final = "\x1b[0m"
_HOME_CLEAR: Final = "\x1b[H\x1b[2J"
#: Column headings for the reasons, in reason order.
SHORT: Final = {
    Reason.OK: "OK",
    Reason.RISKY: "RISK",
    Reason.EXPIRED: "EXP",
    Reason.NOT_FOUND: "NOTF",
    Reason.TCKN_MISMATCH: "TCKN",
    Reason.TIME_WINDOW: "TIME",
    Reason.UNKNOWN_OFFLINE: "UNKN",
    Reason.STALE_LIST: "STALE",
    Reason.UNREADABLE: "UNRD",
}
_EVENT_TEXT: Final = {
    EventKind.START: "passengers start",
    EventKind.STATUS_CHANGE: "the Ministry changes a rider's status",
    EventKind.MINISTRY_DOWN: "the Ministry goes down (503 to every call)",
    EventKind.MINISTRY_UP: "the Ministry is back",
    EventKind.LINK_CUT: "link to the depot cut",
    EventKind.LINK_RESTORED: "link to the depot restored",
    EventKind.STOP: "passengers stop",
}


def _paint(text: str, colour: Colour | None, *, on: bool) -> str:
    if not on or colour is None:
        return text
    return _ANSI[colour] + text + _RESET


@dataclass(frozen=True, slots=True)
class LastAnswer:
    """The last answer a validator showed."""

    reason: Reason
    decision: Decision
    decided_by: DecidedBy
    latency_us: int


@dataclass(frozen=True, slots=True)
class Row:
    """One validator's line."""

    device: str
    online: bool | None
    cut: bool
    counts: Mapping[Reason, int]
    last: LastAnswer | None
    backlog: int | None
    list_version: int | None
    list_age_s: int | None
    stale: bool
    stored: int | None


@dataclass(frozen=True, slots=True)
class Board:
    """Everything one frame of the table shows."""

    elapsed_s: float
    duration_s: float
    phase: str
    ministry_out: bool
    breaker: str | None
    list_version: int | None
    snapshot_version: int | None
    rows: Sequence[Row]
    events: Sequence[Event] = ()
    started_at: float = 0.0
    addresses: Sequence[tuple[str, str]] = field(default_factory=tuple)


def _clock(seconds: float) -> str:
    whole = max(int(seconds), 0)
    return f"{whole // 60:02d}:{whole % 60:02d}"


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


def event_text(event: Event, started_at: float) -> str:
    """One event as a line: time into the run, who, what."""
    who = f"{event.device}: " if event.device else ""
    note = f" ({event.note})" if event.note else ""
    return f"{_clock(event.at - started_at)}  {who}{_EVENT_TEXT[event.kind]}{note}"


def render(board: Board, *, colour: bool) -> str:
    """The table as text (with ANSI colours when ``colour``)."""
    ministry = (
        _paint("OUTAGE", Colour.RED, on=colour) if board.ministry_out else "up"
    ) + f" (breaker {_or_dash(board.breaker)})"
    head = (
        f"{_BOLD if colour else ''}hesgate demo{_RESET if colour else ''}"
        f"   {_clock(board.elapsed_s)} / {_clock(board.duration_s)}   {board.phase}"
        f"   Ministry: {ministry}"
        f"   depot list v{_or_dash(board.list_version)}"
        f" (snapshot v{_or_dash(board.snapshot_version)})"
    )
    reasons = "".join(f"{SHORT[r]:>6}" for r in Reason)
    lines = [
        head,
        "",
        f"{'validator':<14}{'link':<9}{'taps':>5}  {'last answer':<26}{reasons}"
        f"{'backlog':>9}{'list':>8}{'age':>6}  {'stored':>6}",
    ]
    for row in board.rows:
        lines.append(_row(row, colour=colour))
    lines.append("")
    lines.extend(event_text(e, board.started_at) for e in board.events[-6:])
    if board.addresses:
        lines.append("")
        lines.extend(f"{name:<14}{url}" for name, url in board.addresses)
    lines.append("")
    lines.append("Ctrl-C stops early (the backlogs still drain); twice stops at once.")
    return "\n".join(lines) + "\n"


def _row(row: Row, *, colour: bool) -> str:
    # Cells are padded before they are painted, so colour codes never upset the columns.
    if row.cut:
        link = _paint("CUT".ljust(9), Colour.RED, on=colour)
    elif row.online is None:
        link = "?".ljust(9)
    else:
        link = ("online" if row.online else "offline").ljust(9)
    taps = sum(row.counts.values())
    if row.last is None:
        last = "-".ljust(26)
    else:
        by = row.last.decided_by.name.lower().replace("_", " ")
        text = f"{row.last.reason.name:<15.15} {by:<10.10}"
        last = _paint(text, colour_of(row.last.reason, row.last.decision), on=colour)
    counts = "".join(f"{row.counts.get(r, 0):>6}" for r in Reason)
    age_text = "-" if row.list_age_s is None else f"{row.list_age_s}s"
    age = (
        _paint(f"{age_text + '!':>6}", Colour.YELLOW, on=colour) if row.stale else f"{age_text:>6}"
    )
    return (
        f"{row.device:<14.14}{link}{taps:>5}  {last}{counts}"
        f"{_or_dash(row.backlog):>9}{'v' + _or_dash(row.list_version):>8}{age}"
        f"  {_or_dash(row.stored):>6}"
    )


def row_of(
    device: str,
    status: Mapping[str, Any] | None,
    fleet_device: Mapping[str, Any] | None,
    counts: Mapping[Reason, int],
    *,
    cut: bool,
) -> Row:
    """A row from a validator's status JSON and its entry in the depot's fleet view."""
    last = None
    if status is not None and status.get("last_decision"):
        answer = status["last_decision"]
        last = LastAnswer(
            Reason[answer["reason"]],
            Decision[str(answer["decision"]).upper()],
            DecidedBy[str(answer["decided_by"]).upper()],
            int(answer["latency_us"]),
        )
    return Row(
        device=device,
        online=None if status is None else bool(status["online"]),
        cut=cut,
        counts=counts,
        last=last,
        backlog=None if status is None else status["backlog"],
        list_version=None if status is None else status["list_version"],
        list_age_s=None if status is None else status["list_age_s"],
        stale=bool(status and status["list_stale"]),
        stored=None if fleet_device is None else fleet_device["taps_stored"],
    )


class LiveTable:
    """Polls the validators and the depot about once a second and redraws the table."""

    def __init__(
        self,
        run: Run,
        out: TextIO,
        *,
        interactive: bool,
        colour: bool,
        addresses: Sequence[tuple[str, str]] = (),
        interval_s: float = 1.0,
        line_every_s: float = 5.0,
    ) -> None:
        self._run = run
        self._out = out
        self._interactive = interactive
        self._colour = colour
        self._addresses = tuple(addresses)
        self._interval_s = interval_s
        self._line_every_s = line_every_s
        self._statuses: dict[str, Mapping[str, Any]] = {}
        self._fleet: Mapping[str, Any] = {}
        self._last_line = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Redraw until ``stop`` is set."""
        while not stop.is_set():
            await self._poll()
            self._draw()
            try:
                async with asyncio.timeout(self._interval_s):
                    await stop.wait()
            except TimeoutError:
                continue

    async def _poll(self) -> None:
        for handle in self._run.stack.validators:
            try:
                self._statuses[handle.device] = await handle.screen.status()
            except ServiceError:
                self._statuses.pop(handle.device, None)
        try:
            self._fleet = await self._run.stack.depot.fleet()
        except ServiceError:
            self._fleet = {}

    def board(self) -> Board:
        """What the table shows now."""
        run = self._run
        passengers = run.passengers
        fleet_devices = {d["id"]: d for d in self._fleet.get("devices", ())}
        rows = [
            row_of(
                h.device,
                self._statuses.get(h.device),
                fleet_devices.get(h.device),
                passengers.counts[h.device] if passengers else collections.Counter(),
                cut=run.link_cut(h.device),
            )
            for h in run.stack.validators
        ]
        listing = self._fleet.get("list") or {}
        snapshot = listing.get("snapshot") or {}
        down = run.timeline.windows(EventKind.MINISTRY_DOWN, EventKind.MINISTRY_UP)
        return Board(
            elapsed_s=run.elapsed_s if run.phase == "running" else run.scenario.duration_s,
            duration_s=run.scenario.duration_s,
            phase=run.phase,
            ministry_out=bool(down) and down[-1][1] == float("inf"),
            breaker=(self._fleet.get("ministry") or {}).get("breaker"),
            list_version=listing.get("version"),
            snapshot_version=snapshot.get("list_version"),
            rows=rows,
            events=tuple(run.timeline.events),
            started_at=run.started_at,
            addresses=self._addresses,
        )

    def _draw(self) -> None:
        board = self.board()
        if self._interactive:
            self._out.write(_HOME_CLEAR + render(board, colour=self._colour))
        elif time.monotonic() - self._last_line >= self._line_every_s:
            self._last_line = time.monotonic()
            self._out.write(progress_line(board) + "\n")
        self._out.flush()


def progress_line(board: Board) -> str:
    """One line for a log: time, Ministry, and each validator's taps, backlog and list."""
    parts = [f"{_clock(board.elapsed_s)} Ministry {'OUT' if board.ministry_out else 'up'}"]
    for row in board.rows:
        link = "CUT" if row.cut else ("online" if row.online else "offline")
        parts.append(
            f"{row.device} {link} {sum(row.counts.values())} taps"
            f" backlog {_or_dash(row.backlog)} list v{_or_dash(row.list_version)}"
            + (" STALE" if row.stale else "")
        )
    return " | ".join(parts)
