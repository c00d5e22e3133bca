"""Small measuring tools: best-of timing, percentiles, process memory, progress lines."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def say(text: str) -> None:
    """A progress line on stderr (the table itself goes to stdout)."""
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


def best_of(repeats: int, run: Callable[[], T]) -> tuple[float, T]:
    """The shortest wall time of ``repeats`` calls of ``run`` (seconds), and the last result.

    On a shared machine the minimum is the figure least disturbed by others.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    started = time.perf_counter()
    result = run()
    best = time.perf_counter() - started
    for _ in range(repeats - 1):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def best_interleaved(repeats: int, runs: Mapping[str, Callable[[], object]]) -> dict[str, float]:
    """The best wall time of each of ``runs``, timed in turns, ``repeats`` rounds.

    Taking turns exposes the code under test and its reference to the same
    bursts of load from other processes on a shared machine.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def percentile(samples: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q``-th percentile (0..100) of ``samples``, linearly interpolated."""
    data = np.asarray(samples, dtype=np.float64)
    if data.size == 0:
        return float("nan")
    return float(np.percentile(data, q))


def status_kb(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``RssAnon``, ``RssFile``, ``VmHWM``...)."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(f"/proc/self/status has no {field}")


def mapped_rss_bytes(path: Path) -> int:
    """Resident bytes of this process's mappings of ``path`` (from ``/proc/self/smaps``)."""
    target = str(path.resolve())
    total = 0
    inside = False
    for line in Path("/proc/self/smaps").read_text(encoding="utf-8", errors="replace").splitlines():
        first = line.split(maxsplit=5)
        if first and "-" in first[0] and len(first) >= 5 and ":" in first[3]:
            # A mapping header: "start-end perms offset dev inode [path]".
            inside = len(first) == 6 and first[5].strip() == target
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1]) * 1024
    return total


_TICK: float = 1.0 / os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` after the command name, or ``None`` if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()


def process_cpu_s(pid: int, *, children: bool = False) -> float:
    """CPU seconds (user + system) ``pid`` has used; with ``children``, its reaped children too."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # After the name: state ppid ... utime (field 14 of stat) is index 11 here.
    used = int(fields[11]) + int(fields[12])
    if children:
        used += int(fields[13]) + int(fields[14])
    return used * _TICK


def tree_cpu_s(parent: int) -> float:
    """CPU seconds of ``parent``, its reaped children and its live children.

    For PostgreSQL's postmaster this is the whole server: a backend that has
    exited is counted in the postmaster's children time.
    """
    total = process_cpu_s(parent, children=True)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and fields[1] == str(parent):
            total += process_cpu_s(int(entry.name))
    return total


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages (others share it)."""
    return " ".join(Path("/proc/loadavg").read_text(encoding="ascii").split()[:3])


def machine() -> dict[str, str]:
    """What the figures were measured on: CPU, cores, memory, kernel, Python."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kb = 0
    for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
        if line.startswith("MemTotal:"):
            memory_kb = int(line.split()[1])
            break
    return {
        "cpu": model,
        "cores": str(os.cpu_count() or 0),
        "memory": f"{memory_kb / 1024 / 1024:.1f} GiB",
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }
