"""Pages checked in a real headless Chromium (Debian's ``chromium``).

Tests that need it take the ``chromium`` fixture from ``tests/conftest.py``; it
skips with a stated reason only where the browser is not installed (CI
installs it, see ``.ci/run``).

Usage::

    def test_page(chromium: Chromium, tmp_path: Path) -> None:
        html = chromium.dom(url)                      # the DOM after scripts ran
        png = chromium.screenshot(url, tmp_path / "page.png", width=800)
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


class ChromiumError(Exception):
    """Chromium could not load or render a page."""


def find_chromium() -> str | None:
    """The path of a Chromium binary on this machine, or None."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found is not None:
            return found
    return None


@dataclass(frozen=True, slots=True)
class Chromium:
    """One headless Chromium binary; every call starts a fresh, throw-away profile."""

    binary: str
    # Time the page's own scripts get (fetches, timers) before the DOM is read.
    budget_ms: int = 3000
    timeout_s: float = 60.0

    def _run(self, url: str, *args: str, width: int, height: int) -> bytes:
        with tempfile.TemporaryDirectory(prefix="hg-chromium-") as profile:
            cmd = [
                self.binary,
                "--headless",
                "--no-sandbox",  # root in CI containers
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--virtual-time-budget={self.budget_ms}",
                *args,
                url,
            ]
            try:
                done = subprocess.run(cmd, capture_output=True, timeout=self.timeout_s, check=False)
            except subprocess.TimeoutExpired as err:
                raise ChromiumError(f"chromium did not finish {url} in {self.timeout_s} s") from err
        if done.returncode != 0:
            tail = done.stderr.decode("utf-8", "replace")[-800:]
            raise ChromiumError(f"chromium exited {done.returncode} on {url}: {tail}")
        return done.stdout

    def dom(self, url: str, *, width: int = 1280, height: int = 900) -> str:
        """The page's DOM as HTML after its scripts ran for ``budget_ms``."""
        return self._run(url, "--dump-dom", width=width, height=height).decode("utf-8")

    def screenshot(self, url: str, path: Path, *, width: int = 1280, height: int = 900) -> Path:
        """A PNG of the page at ``width`` x ``height``, written to ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._run(url, f"--screenshot={path}", width=width, height=height)
        if not path.exists() or path.stat().st_size == 0:
            raise ChromiumError(f"chromium wrote no screenshot of {url}")
        return path
