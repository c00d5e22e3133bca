"""Child processes: the real programs, started, waited for and stopped cleanly.

Each child runs in its own session, so a Ctrl-C at the terminal reaches only
the demo, which then stops the children in order (validators first, the
depot and its database last). On Linux each child also asks the kernel for
SIGTERM should the demo itself die, so none is left behind.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import shutil
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog

log = structlog.get_logger("hesgate.demo.children")

#: prctl(2) option: the signal a child gets when its parent dies.
_PR_SET_PDEATHSIG: Final = 1
#: How many lines of a failed command's log its error quotes.
_TAIL_LINES: Final = 12


class ChildError(RuntimeError):
    """A program could not be found or started, or a command failed; the message says which."""


def _death_signal_setter() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking for SIGTERM when the parent dies (Linux), else ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    prctl = ctypes.CDLL(name, use_errno=True).prctl

    def die_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    return die_with_parent


def program(name: str) -> str:
    """The path of a console script: beside this interpreter (the venv), else on ``PATH``."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ChildError(
            f"{name} is not installed: run `make demo` (or pip install -e '.[validator,depot]')"
        )
    return found


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment for a child: ours without any ``HESGATE_*`` setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HESGATE_")}
    env.update(extra)
    return env


def tail(path: Path, lines: int = _TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file (empty if there is none)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass(slots=True)
class Child:
    """A running program and the file its output goes to."""

    name: str
    process: asyncio.subprocess.Process
    log_path: Path

    @property
    def running(self) -> bool:
        """Whether it has not exited yet."""
        return self.process.returncode is None

    def check_alive(self) -> None:
        """Raise :class:`ChildError` (quoting its log) if it has exited."""
        if not self.running:
            raise ChildError(
                f"{self.name} exited with status {self.process.returncode}; "
                f"the end of {self.log_path}:\n{tail(self.log_path)}"
            )

    async def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL; returns the exit status."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout_s):
                    await self.process.wait()
            except TimeoutError:
                log.warning("child did not stop in time; killing it", child=self.name)
                self.process.kill()
        status = await self.process.wait()
        log.debug("child stopped", child=self.name, status=status)
        return status


async def spawn(name: str, argv: Sequence[str], *, env: Mapping[str, str], log_path: Path) -> Child:
    """Start a long-running program, its stdout and stderr going to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=dict(env),
                start_new_session=True,
                preexec_fn=_death_signal_setter(),
            )
        except OSError as err:
            raise ChildError(f"cannot start {name} ({argv[0]}): {err}") from err
    log.debug("child started", child=name, pid=process.pid)
    return Child(name, process, log_path)


async def run_command(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    timeout_s: float = 120.0,
) -> str:
    """Run a program to completion; returns its stdout, raises :class:`ChildError` on failure.

    Its stderr (the log lines) is appended to ``log_path``.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as err_out:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=err_out,
                env=dict(env),
                start_new_session=True,
                preexec_fn=_death_signal_setter(),
            )
        except OSError as err:
            raise ChildError(f"cannot start {name} ({argv[0]}): {err}") from err
        try:
            async with asyncio.timeout(timeout_s):
                stdout, _ = await process.communicate()
        except TimeoutError as err:
            process.kill()
            await process.wait()
            raise ChildError(f"{name} took longer than {timeout_s:.0f} s; see {log_path}") from err
        except asyncio.CancelledError:
            # The demo is stopping: the command must not outlive it.
            process.kill()
            await process.wait()
            raise
    text = stdout.decode("utf-8", errors="replace")
    if process.returncode != 0:
        raise ChildError(
            f"{name} failed with status {process.returncode}: {text.strip()}\n{tail(log_path)}"
        )
    return text
