"""Every way a Ministry call can fail, as types a caller can tell apart.

Two kinds: answers about the code (:class:`HesCodeNotFound`,
:class:`HesCodeExpired`, :class:`HesCodeRejected`) mean the service worked
and said no; every other :class:`MinistryError` means there is no answer.
Neither kind is ever a RISKLESS result. Messages never hold the password,
the Authorization header or the HES code itself (the code is an attribute).
"""

from __future__ import annotations


class MinistryError(Exception):
    """Base of every Ministry failure.

    ``retryable`` says whether asking again may give another answer.
    """

    retryable: bool = False


class HesCodeAnswer(MinistryError):
    """The service answered, and its answer is that this code has no result."""

    def __init__(self, message: str, hes_code: str, error_key: str) -> None:
        super().__init__(message)
        self.hes_code = hes_code
        self.error_key = error_key


class HesCodeNotFound(HesCodeAnswer):
    """The Ministry knows no such HES code (``hescodenotfound``)."""

    def __init__(self, hes_code: str, error_key: str = "hescodenotfound") -> None:
        super().__init__("HES code not found", hes_code, error_key)


class HesCodeExpired(HesCodeAnswer):
    """The HES code has expired (``hescodehasbeenexpired``)."""

    def __init__(self, hes_code: str, error_key: str = "hescodehasbeenexpired") -> None:
        super().__init__("HES code has expired", hes_code, error_key)


class HesCodeRejected(HesCodeAnswer):
    """The service refused the code with an error key this client does not know."""

    def __init__(self, hes_code: str, error_key: str) -> None:
        super().__init__(f"HES code refused with error key {error_key!r}", hes_code, error_key)


class MinistryAuthError(MinistryError):
    """401 or 403: the credentials were refused. Never retried; someone must act."""

    def __init__(self, status: int) -> None:
        super().__init__(
            f"the Ministry refused our credentials (HTTP {status}): "
            "check the user name and password for this environment"
        )
        self.status = status


class MinistryThrottled(MinistryError):
    """429: too many calls. ``retry_after_s`` is the service's ``Retry-After``, if it gave one."""

    retryable = True

    def __init__(self, retry_after_s: float | None) -> None:
        hint = f", retry after {retry_after_s:g} s" if retry_after_s is not None else ""
        super().__init__(f"the Ministry is throttling us (HTTP 429){hint}")
        self.retry_after_s = retry_after_s


class MinistryUnavailable(MinistryError):
    """No answer: 5xx, a gateway page, a refused or broken connection."""

    retryable = True

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class MinistryTimeout(MinistryUnavailable):
    """No answer in time: one attempt's time-out, or the caller's deadline for the whole call."""


class MinistryProtocolError(MinistryError):
    """An answer that is not the documented shape.

    Retryable when it came with HTTP 200 (a gateway or a half-sent body may
    be to blame); not when the service refused the request itself.
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class CircuitOpen(MinistryError):
    """The circuit breaker is open: no call was made. ``retry_in_s`` is the cool-down left."""

    def __init__(self, retry_in_s: float) -> None:
        super().__init__(
            f"Ministry calls suspended after repeated failures; next try in {retry_in_s:.1f} s"
        )
        self.retry_in_s = retry_in_s
