"""The Ministry of Health G2G HES service: the depot's client and a faithful simulator.

The client's public names are re-exported here; the simulator lives in
:mod:`protocol.ministry.simulator`.
"""

from protocol.ministry.breaker import BreakerState, BreakerStatus
from protocol.ministry.client import MinistryClient, MinistrySettings
from protocol.ministry.errors import (
    CircuitOpen,
    HesCodeAnswer,
    HesCodeExpired,
    HesCodeNotFound,
    HesCodeRejected,
    MinistryAuthError,
    MinistryError,
    MinistryProtocolError,
    MinistryThrottled,
    MinistryTimeout,
    MinistryUnavailable,
)
from protocol.ministry.results import BulkOutcome, HesResult
from protocol.ministry.wire import BULK_LIMIT, LIVE_BASE_URL, TEST_BASE_URL

__all__ = [
    "BULK_LIMIT",
    "LIVE_BASE_URL",
    "TEST_BASE_URL",
    "BreakerState",
    "BreakerStatus",
    "BulkOutcome",
    "CircuitOpen",
    "HesCodeAnswer",
    "HesCodeExpired",
    "HesCodeNotFound",
    "HesCodeRejected",
    "HesResult",
    "MinistryAuthError",
    "MinistryClient",
    "MinistryError",
    "MinistryProtocolError",
    "MinistrySettings",
    "MinistryThrottled",
    "MinistryTimeout",
    "MinistryUnavailable",
]
