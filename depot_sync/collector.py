"""The cyclic garbage collector, set for a long-running server (``[server] gc_*``).

A tap batch allocates thousands of short-lived objects (decoded records,
rows for COPY), all freed by reference counting: none is ever in a cycle.
With Python's own thresholds (700, 10, 10) the collector still runs every
700 net allocations and walks the older generations again and again: about
a third of the depot's CPU during ingest (docs/performance.md). Once
``serve`` runs, what is alive then (modules, the application, the pool, the
configuration) stays alive until exit, so it is frozen out of the
collector's sight (``gc.freeze``) and the thresholds are raised: collections
become rare and short. Memory held in real cycles is still collected.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from depot_sync.config import ServerSection

log = structlog.get_logger("hesgate.depot")


@contextmanager
def tuned_collector(server: ServerSection) -> Iterator[None]:
    """Apply ``server.gc_thresholds`` and ``server.gc_freeze`` for the block, then undo them."""
    before = gc.get_threshold()
    if server.gc_freeze:
        # Garbage that exists now would otherwise be frozen, and kept, for good.
        gc.collect()
        gc.freeze()
    if server.gc_thresholds:
        gc.set_threshold(*server.gc_thresholds)
    log.info(
        "garbage collector set",
        thresholds=list(gc.get_threshold()),
        frozen_objects=gc.get_freeze_count(),
    )
    try:
        yield
    finally:
        gc.set_threshold(*before)
        if server.gc_freeze:
            gc.unfreeze()
