"""``python -m bench``: run the benchmark sections and print one table.

Examples::

    python -m bench                      # everything, default sizes (about 10 minutes)
    python -m bench --quick              # every section, small sizes (a smoke run)
    python -m bench --only risklist --sizes 1000000
    python -m bench --markdown bench-data/table.md --json bench-data/results.json

Progress goes to stderr, the table to stdout, every program's log lines to
``<data-dir>/bench.log``. Exit status: 0 when every section ran (missed
targets are reported, not failures), 1 when a section failed, 2 for a bad
command line or setting.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final

import aiohttp
import asyncpg

from bench import decision, delta_polls, export, ingest, risklist, snapshot_build
from bench.context import BenchFailure, Context
from bench.depot import DepotFailure
from bench.measure import load_average, machine, say
from bench.settings import SECTIONS, BenchConfig, load
from bench.table import Result, render_json, render_markdown, render_text
from depot_sync.db.embedded import EmbeddedPostgresError
from protocol.codec import MessageError
from protocol.snapshot import SnapshotError
from runtime.config import ConfigError
from runtime.logs import configure_logging
from validator.risklist import ListUpdateError

Section = Callable[[Context], Awaitable[list[Result]]]
RUNNERS: Final[dict[str, Section]] = {
    "risklist": risklist.run,
    "decision": decision.run,
    "snapshot_build": snapshot_build.run,
    "ingest": ingest.run,
    "export": export.run,
    "delta_polls": delta_polls.run,
}
#: What stops one section but lets the others run.
SECTION_FAILURES: Final = (
    BenchFailure,
    DepotFailure,
    EmbeddedPostgresError,
    asyncpg.PostgresError,
    aiohttp.ClientError,
    MessageError,
    SnapshotError,
    ListUpdateError,
    TimeoutError,
    OSError,
)


def _ints(text: str) -> list[int]:
    try:
        return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas: {text}") from err


def _sections(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    for name in names:
        if name not in SECTIONS:
            raise argparse.ArgumentTypeError(
                f"unknown section {name!r}; known: {', '.join(SECTIONS)}"
            )
    return names


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run the hesgate benchmarks and print one table (docs/performance.md).",
        epilog=f"sections, in order: {', '.join(SECTIONS)}",
    )
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of everything")
    p.add_argument(
        "--only", type=_sections, action="extend", metavar="S1,S2", help="run only these sections"
    )
    p.add_argument(
        "--skip", type=_sections, action="extend", metavar="S1,S2", help="leave these out"
    )
    p.add_argument("--config", type=Path, help="a TOML file with a [bench] table")
    p.add_argument(
        "--data-dir", type=Path, help="scratch and cache directory (default bench-data/)"
    )
    p.add_argument("--fresh", action="store_true", help="rebuild cached lists and databases")
    p.add_argument("--sizes", type=_ints, help="risk-list sizes, e.g. 1000000,10000000")
    p.add_argument("--lookups", type=int, help="lookups per timed pass")
    p.add_argument("--delta-changes", type=int, help="changes in the delta applied under load")
    p.add_argument("--decision-taps", type=int, help="taps through the gate")
    p.add_argument("--credentials", type=int, help="credentials the depot builds a snapshot of")
    p.add_argument("--ingest-taps", type=int, help="taps per ingest run")
    p.add_argument("--validators", type=_ints, help="concurrent validators, e.g. 8,64")
    p.add_argument("--polls", type=int, help="requests per poll measure")
    p.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    return p


def flags_of(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line sets, as a nested mapping."""
    flags: dict[str, Any] = {}

    def put(section: str | None, key: str, value: object) -> None:
        if value is None:
            return
        if section is None:
            flags[key] = value
        else:
            flags.setdefault(section, {})[key] = value

    put(None, "data_dir", None if args.data_dir is None else str(args.data_dir))
    put(None, "fresh", True if args.fresh else None)
    sections = list(args.only or SECTIONS)
    if args.skip:
        sections = [s for s in sections if s not in args.skip]
    if args.only or args.skip:
        put(None, "sections", sections)
    put("risklist", "sizes", args.sizes)
    put("risklist", "lookups", args.lookups)
    put("risklist", "delta_changes", args.delta_changes)
    put("decision", "taps", args.decision_taps)
    put("snapshot_build", "credentials", args.credentials)
    put("ingest", "taps", args.ingest_taps)
    put("ingest", "validators", args.validators)
    put("delta_polls", "polls", args.polls)
    return flags


async def run_all(config: BenchConfig) -> tuple[list[Result], dict[str, str], list[str]]:
    """Run the chosen sections in order; the results, the run's context, and what failed."""
    ctx = Context(config)
    results: list[Result] = []
    failed: list[str] = []
    try:
        for name in SECTIONS:
            if name not in config.sections:
                continue
            started = time.perf_counter()
            try:
                section_results = await RUNNERS[name](ctx)
            except SECTION_FAILURES as err:
                say(f"{name}: FAILED: {type(err).__name__}: {err}")
                failed.append(name)
                continue
            results.extend(section_results)
            say(f"{name}: done in {time.perf_counter() - started:.0f} s")
    finally:
        await ctx.close()
    return results, ctx.notes, failed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    args = parser().parse_args(argv)
    try:
        config = load(args.config, quick=args.quick, flags=flags_of(args))
    except ConfigError as err:
        sys.stderr.write(f"bench: {err}\n")
        return 2
    log_path = config.data_dir.resolve() / "bench.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # Left open for the life of the process: pgserver still logs from its exit handler.
    log_file = log_path.open("a", encoding="utf-8")
    configure_logging(
        config.log_level, json=True, stream=log_file, quiet_loggers=("asyncio", "pgserver")
    )
    say(f"sections: {', '.join(config.sections)}; log: {log_path}")
    load_before = load_average()
    results, notes, failed = asyncio.run(run_all(config))
    context = {
        **machine(),
        **notes,
        "load average (1/5/15 min) at start": load_before,
        "load average at end": load_average(),
        "seconds": f"{time.perf_counter() - started:.0f}",
    }
    header = "\n".join(f"{k}: {v}" for k, v in context.items())
    sys.stdout.write(f"{header}\n\n{render_text(results)}")
    if args.markdown is not None:
        args.markdown.write_text(render_markdown(results), encoding="utf-8")
    if args.json is not None:
        args.json.write_text(render_json(results, context), encoding="utf-8")
    if failed:
        sys.stderr.write(f"bench: failed sections: {', '.join(failed)}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
