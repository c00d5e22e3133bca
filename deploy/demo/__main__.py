"""``python -m deploy.demo`` (``make demo``): the whole system on this machine, for about a minute.

    python -m deploy.demo [--duration SECONDS] [--keep] [--data-dir DIR] [--seed N] [--size N]

Starts the Ministry simulator, the depot on an embedded PostgreSQL and three
validators on pseudo-terminals, then sends passengers to them while the
Ministry has an outage and one validator loses the depot for a while. A live
table shows each validator's answers, backlog and list version. After
``--duration`` seconds (or Ctrl-C) the passengers stop, every backlog drains,
the auditor export is checked against what the validators answered, all
programs stop, and a summary is printed. Ctrl-C twice stops at once, without
the summary. Exit status: 0 all well, 1 a failure or a problem the audit
found (the summary lists it), 2 bad arguments, 130 stopped before the run.

Data and logs go to a temporary directory, removed at the end unless
``--keep`` (or a failure) keeps it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, Final, TextIO

import aiohttp
import structlog

from deploy.demo.audit import Allowances, audit
from deploy.demo.children import ChildError
from deploy.demo.clients import ServiceError
from deploy.demo.configs import policy_barring
from deploy.demo.passengers import PassengerError
from deploy.demo.qr import ScanFailed
from deploy.demo.scenario import Run, Scenario
from deploy.demo.stack import Stack, StackError, StackSpec
from deploy.demo.summary import render_summary
from deploy.demo.table import LiveTable
from deploy.demo.world import WorldError
from runtime.logs import configure_logging

log = structlog.get_logger("hesgate.demo")

DEFAULT_DURATION_S: Final = 75.0
MIN_DURATION_S: Final = 20.0
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
#: What a failed demo reports in one paragraph rather than a traceback.
FAILURES: Final = (
    StackError,
    ChildError,
    ServiceError,
    PassengerError,
    ScanFailed,
    WorldError,
    OSError,
)


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m deploy.demo",
        description="Run the whole hesgate system on this machine, with a live table.",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=DEFAULT_DURATION_S,
        help=f"seconds of passengers (default {DEFAULT_DURATION_S:.0f}; "
        "STALE_LIST needs 75 or more)",
    )
    p.add_argument("--keep", action="store_true", help="keep the data and logs afterwards")
    p.add_argument("--data-dir", type=Path, help="put data and logs here (a new or empty dir)")
    p.add_argument("--seed", type=int, default=7, help="the simulated population's seed")
    p.add_argument("--size", type=int, default=300, help="how many people the Ministry knows")
    p.add_argument("--log-level", default="info", help="the demo's own log level (in demo.log)")
    return p


class _Output:
    """What the person at the terminal reads."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.interactive = out.isatty()
        self.colour = (
            self.interactive and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
        )

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def clear(self) -> None:
        if self.interactive:
            self.out.write("\x1b[H\x1b[2J")


async def _unless_stopped(stop: asyncio.Event, work: Coroutine[Any, Any, None]) -> bool:
    """Run ``work`` unless ``stop`` comes first (then cancel it); returns whether it finished."""
    task = asyncio.create_task(work)
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        waiter.cancel()
        task.result()
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        # The cancellation we just asked for: start-up is abandoned, the stack stops next.
        await task
    return False


def _install_signals(stop: asyncio.Event, output: _Output) -> None:
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    presses = 0

    def on_signal() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            stop.set()
            output.say("\nStopping (Ctrl-C again stops at once, without a summary)...")
        elif presses == 2 and main_task is not None:
            output.say("\nStopping now, without a summary...")
            main_task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)


async def _stop_fully(stack: Stack) -> None:
    """Stop the stack to the end, even if a second Ctrl-C cancels the demo meanwhile."""
    stopping = asyncio.create_task(stack.stop())
    try:
        await asyncio.shield(stopping)
    except asyncio.CancelledError:
        await stopping
        raise


async def demo(args: argparse.Namespace, root: Path, output: _Output) -> int:
    """Start the stack, play the scenario, audit, stop, summarise; returns the exit status."""
    stop = asyncio.Event()
    _install_signals(stop, output)
    spec = StackSpec(
        root=root,
        policy=policy_barring(dt.datetime.now(dt.UTC)),
        seed=args.seed,
        population_size=args.size,
    )
    cut = next((v.device for v in spec.validators if v.behind_proxy), None)
    async with aiohttp.ClientSession() as session:
        stack = Stack(spec, session, progress=lambda step: output.say(f"  {step}"))
        try:
            if not await _unless_stopped(stop, stack.start()):
                output.say("Stopped during start-up.")
                return EXIT_INTERRUPTED
            addresses = [
                ("depot page", f"{stack.depot_url}/   (ops token: {stack.ops_token})"),
                *((v.device, f"{v.screen_url}   (its screen)") for v in stack.validators),
            ]
            run = Run(stack, Scenario.demo(args.duration, cut))
            table = LiveTable(
                run,
                output.out,
                interactive=output.interactive,
                colour=output.colour,
                addresses=addresses,
            )
            if not output.interactive:
                output.say("\n".join(f"{name}: {url}" for name, url in addresses))
            table_stop = asyncio.Event()
            drawing = asyncio.create_task(table.run(table_stop))
            try:
                result = await run.play(stop)
            finally:
                table_stop.set()
                await drawing
            report = audit(result, stack.list_key, Allowances.of(spec))
        finally:
            output.say("Stopping the validators, the depot (and its PostgreSQL), the Ministry...")
            await _stop_fully(stack)
    keep = "kept" if args.keep else "removed now; --keep keeps them"
    output.clear()
    output.say(
        render_summary(
            result,
            report,
            duration_s=args.duration,
            addresses=addresses,
            data_note=f"Data and logs: {root} ({keep}).",
        )
    )
    return EXIT_OK if report.ok and result.drained else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit status."""
    args = parser().parse_args(argv)
    if args.duration < MIN_DURATION_S:
        sys.stderr.write(f"--duration: at least {MIN_DURATION_S:.0f} s\n")
        return EXIT_USAGE
    if args.data_dir is not None and args.data_dir.exists() and any(args.data_dir.iterdir()):
        sys.stderr.write(f"--data-dir: {args.data_dir} is not empty\n")
        return EXIT_USAGE
    root = (args.data_dir or Path(tempfile.mkdtemp(prefix="hesgate-demo-"))).resolve()
    (root / "logs").mkdir(parents=True, exist_ok=True)
    output = _Output(sys.stdout)
    output.say(
        f"hesgate demo: the whole system on this machine, {args.duration:.0f} s of passengers."
        f"\nData and logs: {root}"
    )
    keep = args.keep
    with (root / "logs" / "demo.log").open("a", encoding="utf-8") as log_file:
        configure_logging(args.log_level, json=True, stream=log_file)
        try:
            status = asyncio.run(demo(args, root, output))
        except FAILURES as err:
            keep = True
            log.exception("demo failed", error=str(err))
            output.say(f"\nThe demo failed: {err}\nLogs are kept in {root / 'logs'}.")
            status = EXIT_FAILED
        except (KeyboardInterrupt, asyncio.CancelledError):
            status = EXIT_INTERRUPTED
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
