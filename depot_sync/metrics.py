"""The depot's Prometheus metrics, in a registry of its own (one per application)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "DepotMetrics"]

#: Breaker states as numbers, for a gauge.
BREAKER_VALUES: Final[Mapping[str, int]] = MappingProxyType(
    {"closed": 0, "half_open": 1, "open": 2}
)


class DepotMetrics:
    """Every metric the depot exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.taps = Counter(
            "hesgate_depot_taps",
            "Tap records received, by whether they were new or already stored.",
            ["outcome"],
            registry=r,
        )
        self.batches = Counter(
            "hesgate_depot_tap_batches",
            "Tap batches, by HTTP outcome.",
            ["outcome"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "hesgate_depot_tap_batch_seconds",
            "Time to store one tap batch (decode, transaction, answer).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.ministry_calls = Counter(
            "hesgate_depot_ministry_calls",
            "Calls to the Ministry, by kind (check, bulk) and outcome.",
            ["kind", "outcome"],
            registry=r,
        )
        self.breaker = Gauge(
            "hesgate_depot_ministry_breaker_state",
            "The Ministry client's circuit breaker: 0 closed, 1 half-open, 2 open, -1 no client.",
            registry=r,
        )
        self.list_version = Gauge(
            "hesgate_depot_list_version", "The newest risk-list version.", registry=r
        )
        self.snapshot_version = Gauge(
            "hesgate_depot_snapshot_version",
            "The list version of the snapshot being served.",
            registry=r,
        )
        self.snapshot_entries = Gauge(
            "hesgate_depot_snapshot_entries", "Entries in the snapshot being served.", registry=r
        )
        self.snapshots_refused = Counter(
            "hesgate_depot_snapshots_refused",
            "Snapshot builds refused by the empty or shrink guard.",
            registry=r,
        )
        self.checks = Counter(
            "hesgate_depot_online_checks",
            "Online checks answered, by outcome and whether the Ministry was asked.",
            ["outcome", "source"],
            registry=r,
        )
        self.auth_failures = Counter(
            "hesgate_depot_auth_failures",
            "Validator requests refused by signature checks, by reason.",
            ["reason"],
            registry=r,
        )
        self.exports = Counter(
            "hesgate_depot_exports", "Trip exports, by outcome.", ["outcome"], registry=r
        )
        self.traces = Counter(
            "hesgate_depot_traces", "Contact traces, by outcome.", ["outcome"], registry=r
        )
        self.refreshed = Counter(
            "hesgate_depot_refresh_codes",
            "HES codes re-checked by the refresh job, by result.",
            ["result"],
            registry=r,
        )

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
