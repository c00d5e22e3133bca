"""What the person at the terminal sees: the live table and the closing summary."""

from __future__ import annotations

import re

import pytest

from deploy.demo.audit import audit
from deploy.demo.scenario import EventKind
from deploy.demo.summary import percentile, render_summary
from deploy.demo.table import Board, progress_line, render, row_of
from protocol.reasons import DecidedBy, Reason
from tests.e2e.helpers import ADULT, ALLOW, GARBAGE, LIST_KEY, T0, card, event, qr, result, tap

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def status(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "online": True,
        "backlog": 0,
        "list_version": 481,
        "list_age_s": 3,
        "list_stale": False,
        "last_decision": {
            "reason": "OK",
            "decision": "allow",
            "decided_by": "local_list",
            "latency_us": 350,
        },
    }
    base.update(over)
    return base


def board() -> Board:
    rows = [
        row_of(
            "bus-1-front",
            status(),
            {"taps_stored": 40},
            {Reason.OK: 30, Reason.RISKY: 10},
            cut=False,
        ),
        row_of(
            "bus-3-front",
            status(
                online=False,
                backlog=17,
                list_version=470,
                list_age_s=63,
                list_stale=True,
                last_decision={
                    "reason": "STALE_LIST",
                    "decision": "allow_flagged",
                    "decided_by": "offline_policy",
                    "latency_us": 300_000,
                },
            ),
            {"taps_stored": 23},
            {Reason.STALE_LIST: 3, Reason.OK: 37},
            cut=True,
        ),
        row_of("bus-9-front", None, None, {}, cut=False),
    ]
    return Board(
        elapsed_s=65,
        duration_s=75,
        phase="running",
        ministry_out=True,
        breaker="open",
        list_version=487,
        snapshot_version=470,
        rows=rows,
        events=(event(0, EventKind.START), event(2, EventKind.LINK_CUT, "bus-3-front")),
        started_at=T0,
        addresses=(("depot page", "http://127.0.0.1:1/"),),
    )


@pytest.mark.parametrize("colour", [False, True])
def test_the_table_shows_each_validator_in_aligned_columns(colour: bool) -> None:
    text = render(board(), colour=colour)
    assert ("\x1b[" in text) is colour
    lines = ANSI.sub("", text).splitlines()
    header = next(line for line in lines if line.startswith("validator"))
    rows = [line for line in lines if line.startswith("bus-")]
    assert len(rows) == 3
    assert {len(r) for r in rows} == {len(header)}
    one, three, unknown = rows
    assert one.split()[:4] == ["bus-1-front", "online", "40", "OK"]
    for shown in ("CUT", "STALE_LIST", "63s!"):
        assert shown in three
    assert three.endswith("23")
    assert unknown.split()[1] == "?"
    for shown in ("01:05 / 01:15", "OUTAGE", "v487"):
        assert shown in lines[0]
    assert "00:02  bus-3-front: link to the depot cut" in lines


def test_without_a_terminal_one_line_says_it() -> None:
    line = progress_line(board())
    assert line.startswith("01:05 Ministry OUT")
    assert "bus-3-front CUT 40 taps backlog 17 list v470 STALE" in line


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([7.0], 99) == 7
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_the_summary_counts_reasons_and_storage_and_explains_a_missing_reason() -> None:
    taps = [
        tap(1, 1, qr(ADULT), Reason.OK, DecidedBy.LOCAL_LIST),
        tap(2, 2, card(ADULT), Reason.OK, DecidedBy.LOCAL_LIST),
        tap(3, 3, GARBAGE, Reason.UNREADABLE, DecidedBy.NONE),
    ]
    run = result(taps)
    text = render_summary(
        run,
        audit(run, LIST_KEY, ALLOW),
        duration_s=40,
        addresses=(("bus-1", "http://127.0.0.1:2/"),),
        data_note="Data and logs: /tmp/x (removed).",
    )
    assert re.search(r"OK\s+2\s+green", text)
    assert re.search(r"UNREADABLE\s+1\s+yellow", text)
    assert "Did not occur: RISKY, EXPIRED" in text
    assert "run with DURATION=75 or more" in text
    assert re.search(r"bus-1\s+3 recorded =\s+3 stored \(depot ack 3\)", text)
    assert "no problems" in text
    assert "p50 0.4 ms, p99 0.4 ms" in text
    assert "bus-1         http://127.0.0.1:2/" in text
    assert text.rstrip().endswith("(removed).")
