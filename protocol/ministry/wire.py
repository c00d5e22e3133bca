"""The Ministry's G2G HES service as public client code shows it: paths, fields, error keys.

Both the client and the simulator speak from these names, so a renamed field
or path is changed once. What the service does is described in
``docs/ministry.md``; nothing here is guessed beyond what that page marks as
unknown.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

#: Live and test environments; the path after the host is what the simulator serves.
LIVE_BASE_URL: Final = "https://hesservis.turkiye.gov.tr/services/g2g/saglik/hes/"
TEST_BASE_URL: Final = "https://hesservis.turkiye.gov.tr/services/g2g/test/saglik/hes/"
LIVE_PATH: Final = "/services/g2g/saglik/hes/"
TEST_PATH: Final = "/services/g2g/test/saglik/hes/"

#: Endpoints, relative to a base URL. Every call is a POST with a JSON body.
CHECK: Final = "check-hes-code"
CHECK_PLUS: Final = "check-hes-code-plus"
CHECK_EMPLOYEE: Final = "check-employee-hes-code"
CHECK_VISITOR: Final = "check-visitor-hes-code"
CHECK_BULK: Final = "check-hes-codes"
CHECK_BULK_PLUS: Final = "check-hes-codes-plus"
SINGLE_ENDPOINTS: Final = (CHECK, CHECK_PLUS, CHECK_EMPLOYEE, CHECK_VISITOR)
BULK_ENDPOINTS: Final = (CHECK_BULK, CHECK_BULK_PLUS)
PLUS_ENDPOINTS: Final = frozenset({CHECK_PLUS, CHECK_BULK_PLUS})

#: The most codes one bulk call may carry.
BULK_LIMIT: Final = 500

#: Request body field.
HES_CODE: Final = "hes_code"

#: Result fields.
STATUS: Final = "current_health_status"
EXPIRATION: Final = "expiration_date"
MASKED_TCKN: Final = "masked_identity_number"
MASKED_FIRST_NAME: Final = "masked_firstname"
MASKED_LAST_NAME: Final = "masked_lastname"
IS_VACCINATED: Final = "is_vaccinated"
IS_IMMUNE: Final = "is_immune"
LAST_NEGATIVE_TEST: Final = "last_negative_test_date"
IS_TEST_DATA_SHARED: Final = "is_test_data_shared"
RISKY: Final = "RISKY"
RISKLESS: Final = "RISKLESS"

#: Bulk answer maps.
SUCCESS_MAP: Final = "success_map"
UNSUCCESS_MAP: Final = "unsuccess_map"

#: JHipster error body fields and the error keys seen in public clients.
ERROR_KEY: Final = "errorKey"
NOT_FOUND_KEY: Final = "hescodenotfound"
EXPIRED_KEY: Final = "hescodehasbeenexpired"


def format_time(moment: dt.datetime) -> str:
    """An aware instant as the service writes it: ``2021-12-30T13:00:00.000Z``."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no place on the wire")
    utc = moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 instant as an aware UTC datetime.

    The service documents its dates as UTC, so a time without an offset is
    read as UTC. Raises :class:`ValueError` for anything that is not a time.
    """
    moment = dt.datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)
