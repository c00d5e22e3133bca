"""Child processes: started in their own session, stopped in order, failures told plainly."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from deploy.demo.__main__ import EXIT_USAGE, main
from deploy.demo.children import ChildError, child_env, program, run_command, spawn
from deploy.demo.stack import _our_postgres, _stop_leftover_postgres

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


async def test_a_child_runs_in_its_own_session_and_stops_on_sigterm(tmp_path: Path) -> None:
    child = await spawn("sleeper", SLEEPER, env=child_env({}), log_path=tmp_path / "s.log")
    assert child.running
    assert os.getsid(child.process.pid) == child.process.pid  # Ctrl-C at the terminal misses it
    assert await child.stop(timeout_s=10) == -15
    assert not child.running


async def test_a_child_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    stubborn = [
        sys.executable,
        "-c",
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " print('ready', flush=True); time.sleep(60)",
    ]
    log = tmp_path / "stubborn.log"
    child = await spawn("stubborn", stubborn, env=child_env({}), log_path=log)
    while "ready" not in log.read_text():  # noqa: ASYNC110 - the child's own output
        await asyncio.sleep(0.02)
    assert await child.stop(timeout_s=0.3) == -9


async def test_an_exited_child_says_why_with_its_log(tmp_path: Path) -> None:
    crash = [sys.executable, "-c", "import sys; print('bad config'); sys.exit(2)"]
    child = await spawn("crasher", crash, env=child_env({}), log_path=tmp_path / "c.log")
    await child.process.wait()
    with pytest.raises(ChildError, match=r"status 2(.|\n)*bad config"):
        child.check_alive()


async def test_a_failed_command_reports_its_output(tmp_path: Path) -> None:
    ok = await run_command(
        "echo", [sys.executable, "-c", "print('fine')"], env=child_env({}), log_path=tmp_path / "l"
    )
    assert ok == "fine\n"
    failing = [sys.executable, "-c", "import sys; sys.stderr.write('why\\n'); sys.exit(1)"]
    with pytest.raises(ChildError, match=r"status 1(.|\n)*why"):
        await run_command("fail", failing, env=child_env({}), log_path=tmp_path / "l")
    with pytest.raises(ChildError, match="longer than"):
        await run_command(
            "slow", SLEEPER, env=child_env({}), log_path=tmp_path / "l", timeout_s=0.2
        )


def test_children_do_not_inherit_the_callers_hesgate_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HESGATE_CONFIG", "/etc/elsewhere.toml")
    env = child_env({"HESGATE_SERVER__PORT": "1"})
    assert "HESGATE_CONFIG" not in env
    assert env["HESGATE_SERVER__PORT"] == "1"


def test_programs_are_found_beside_the_interpreter_or_refused() -> None:
    assert Path(program("hes-depot")).name == "hes-depot"
    with pytest.raises(ChildError, match="not installed"):
        program("hes-no-such-program")


async def test_only_this_runs_postgres_is_stopped(tmp_path: Path) -> None:
    pg_dir = tmp_path / "pg"
    pg_dir.mkdir()
    other = await spawn("other", SLEEPER, env=child_env({}), log_path=tmp_path / "o.log")
    ours = await spawn(
        "ours", [*SLEEPER, str(pg_dir)], env=child_env({}), log_path=tmp_path / "p.log"
    )
    try:
        # A stale pid file naming somebody else's process: left alone.
        (pg_dir / "postmaster.pid").write_text(f"{other.process.pid}\n{pg_dir}\n")
        assert _our_postgres(pg_dir) is None
        await _stop_leftover_postgres(pg_dir, timeout_s=1)
        assert other.running
        # The server of this directory: stopped.
        (pg_dir / "postmaster.pid").write_text(f"{ours.process.pid}\n{pg_dir}\n")
        assert _our_postgres(pg_dir) == ours.process.pid
        await _stop_leftover_postgres(pg_dir, timeout_s=5)
        assert await ours.process.wait() != 0
    finally:
        await other.stop()
        await ours.stop()


def test_the_command_line_refuses_a_short_run_or_a_used_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--duration", "5"]) == EXIT_USAGE
    (tmp_path / "something").write_text("x")
    assert main(["--data-dir", str(tmp_path)]) == EXIT_USAGE
    assert "not empty" in capsys.readouterr().err
