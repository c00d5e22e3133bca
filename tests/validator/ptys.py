"""A pseudo-terminal pair standing in for the serial scanner, behind a stable path."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path


class FakeCable:
    """A pty whose slave is reachable as ``path`` (a symlink), as a udev rule would make it.

    ``unplug`` closes both ends and removes the link, as pulling the USB plug does;
    ``plug`` makes a new pty behind the same path.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.master: int | None = None
        self._slave: int | None = None

    def plug(self) -> None:
        master, slave = os.openpty()
        self.master, self._slave = master, slave
        tmp = self.path.with_suffix(".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(slave))
        tmp.replace(self.path)

    def unplug(self) -> None:
        self.path.unlink(missing_ok=True)
        for fd in (self.master, self._slave):
            if fd is not None:
                os.close(fd)
        self.master = self._slave = None

    def send(self, data: bytes) -> None:
        assert self.master is not None, "not plugged in"
        os.write(self.master, data)


async def eventually(check: Callable[[], bool], within: float = 10.0) -> None:
    """Wait until ``check()`` holds; fail the test after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - polling state owned by another task
            await asyncio.sleep(0.02)
