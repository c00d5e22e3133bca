"""The closing summary: what was answered, what was stored, and how fast.

Taps by reason (from the auditor export), taps recorded at each validator
against taps stored at the depot, the audit's verdict, list versions,
decision latency p50/p99, the run's timeline and where the pages were.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from deploy.demo.audit import AuditReport
from deploy.demo.passengers import Tap
from deploy.demo.scenario import EventKind, RunResult
from deploy.demo.table import event_text
from protocol.hescode import format_code
from protocol.reasons import SCREEN, Reason

#: The protocol's shortest max_list_age_s: a list cannot go stale sooner.
MIN_LIST_AGE_S: Final = 60
#: Problems listed in full; the rest are counted.
MAX_PROBLEMS_SHOWN: Final = 15


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of ``values`` (which must not be empty)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def _ms(microseconds: float) -> str:
    return f"{microseconds / 1000:.1f} ms"


def latency_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Decision latency p50/p99, overall and by how the answer was decided."""
    if not rows:
        return ["Decision latency: no taps."]
    every = [float(r["latency_us"]) for r in rows]
    lines = [
        f"Decision latency (frame in to answer, online check included): "
        f"p50 {_ms(percentile(every, 50))}, p99 {_ms(percentile(every, 99))}"
    ]
    for by in ("LOCAL_LIST", "ONLINE", "OFFLINE_POLICY", "NONE"):
        some = [float(r["latency_us"]) for r in rows if r["decided_by"] == by]
        if some:
            lines.append(
                f"  {by.lower().replace('_', ' '):<15} {len(some):>5} taps"
                f"  p50 {_ms(percentile(some, 50)):>9}  p99 {_ms(percentile(some, 99)):>9}"
            )
    return lines


def _reason_lines(report: AuditReport, duration_s: float) -> list[str]:
    lines = ["Taps by reason (auditor export):"]
    for reason in Reason:
        count = report.by_reason.get(reason, 0)
        text = SCREEN[reason]
        lines.append(f"  {reason.name:<16}{count:>6}   {text.colour.value:<7} {text.en}")
    missing = [r for r in Reason if not report.by_reason.get(r)]
    if not missing:
        lines.append("Every reason code occurred.")
    else:
        names = ", ".join(r.name for r in missing)
        lines.append(f"Did not occur: {names}.")
        if Reason.STALE_LIST in missing and duration_s < MIN_LIST_AGE_S + 10:
            lines.append(
                f"  (STALE_LIST needs a list older than the policy's max_list_age_s, at least "
                f"{MIN_LIST_AGE_S} s: run with DURATION=75 or more.)"
            )
    return lines


def _storage_lines(result: RunResult, report: AuditReport) -> list[str]:
    fleet = {d["id"]: d for d in result.fleet.get("devices", ())}
    lines = ["Taps recorded at the validators = taps stored at the depot:"]
    for device, recorded in report.recorded.items():
        stored = report.stored.get(device, 0)
        ack = fleet.get(device, {}).get("ack")
        same = "=" if stored == recorded else "!="
        lines.append(
            f"  {device:<14} {recorded:>5} recorded {same} {stored:>5} stored (depot ack {ack})"
        )
    total_recorded = sum(report.recorded.values())
    total_stored = sum(report.stored.values())
    same = "=" if total_recorded == total_stored else "!="
    lines.append(f"  {'all':<14} {total_recorded:>5} recorded {same} {total_stored:>5} stored")
    if not result.drained:
        lines.append("  The backlogs did not drain in time: some taps were still on the buses.")
    return lines


def _audit_lines(report: AuditReport) -> list[str]:
    if report.ok:
        return [
            f"Audit: {report.taps} answers checked against the simulator's truth at their moment,"
            " each tap stored exactly once: no problems."
        ]
    lines = [f"Audit: {len(report.problems)} problems:"]
    lines.extend(f"  {p}" for p in report.problems[:MAX_PROBLEMS_SHOWN])
    if len(report.problems) > MAX_PROBLEMS_SHOWN:
        lines.append(f"  ... and {len(report.problems) - MAX_PROBLEMS_SHOWN} more")
    return lines


def _list_lines(result: RunResult) -> list[str]:
    listing = result.fleet.get("list") or {}
    snapshot = listing.get("snapshot") or {}
    held = ", ".join(f"{d} v{s['list_version']}" for d, s in result.statuses.items())
    return [
        f"List versions: depot v{listing.get('version')} (snapshot v{snapshot.get('list_version')}"
        f", {snapshot.get('entries')} entries); validators: {held}."
    ]


def _change_lines(result: RunResult) -> list[str]:
    change = result.timeline().first(EventKind.STATUS_CHANGE)
    if result.changing is None or change is None:
        return []
    person = result.world.people[result.changing]

    def theirs(tap: Tap) -> bool:
        shown = tap.presented
        return shown.hes_code == person.hes_code or (
            person.card_uid is not None and shown.card_uid == person.card_uid
        )

    risky = [
        t
        for t in result.taps
        if t.reason is Reason.RISKY and theirs(t) and t.time_ms / 1000 >= change.at
    ]
    first = min(risky, key=lambda t: t.time_ms, default=None)
    said = (
        f"first RISKY answer {first.time_ms / 1000 - change.at:.1f} s later ({first.device})"
        if first is not None
        else "no RISKY answer for them after it"
    )
    return [f"Status change: {format_code(person.hes_code)} turned RISKY at the Ministry; {said}."]


def render_summary(
    result: RunResult,
    report: AuditReport,
    *,
    duration_s: float,
    addresses: Sequence[tuple[str, str]],
    data_note: str,
) -> str:
    """The summary as text."""
    played = result.ended_at - result.started_at
    head = (
        f"hesgate demo: {played:.0f} s of passengers at {len(result.statuses)} validators, "
        f"{report.taps} taps" + (" (stopped early)" if result.interrupted else "") + "."
    )
    sections = [
        [head],
        _reason_lines(report, duration_s),
        _storage_lines(result, report),
        _audit_lines(report),
        _list_lines(result) + latency_lines(result.exported) + _change_lines(result),
        ["Timeline:"] + [f"  {event_text(e, result.started_at)}" for e in result.events],
        ["While it ran:"] + [f"  {name:<14}{url}" for name, url in addresses],
        [data_note],
    ]
    return "\n\n".join("\n".join(lines) for lines in sections if lines) + "\n"
