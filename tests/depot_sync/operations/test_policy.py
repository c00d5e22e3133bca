from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from depot_sync.operations.policy import PolicyError, PolicySource, load_policy
from protocol import codec
from protocol.listsign import ListSigner, unseal
from protocol.messages import Behaviour, Policy, Signed
from protocol.risk import Groups

CURFEW = """
timezone = "Europe/Istanbul"
offline_unknown = "deny"
stale_list = "allow_flagged"
max_list_age_s = 3600

[[rules]]
group = "65+"
windows = [{ days = ["monday", "tue", 2, "thu", "fri"], start = "10:00", end = "13:00" }]

[[rules]]
group = "under_20"
windows = [{ days = ["weekend"], start = "13:00", end = "24:00" }]
"""


RULE = '[[rules]]\ngroup = "65+"\nwindows = ['


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_curfew_policy(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, CURFEW), issued_ms=1)
    assert policy.offline_unknown is Behaviour.DENY
    assert policy.max_list_age_s == 3600
    over65, under20 = policy.rules
    assert over65.group is Groups.AGE_65_PLUS
    assert over65.windows[0].weekdays == [0, 1, 2, 3, 4]
    assert (over65.windows[0].start_min, over65.windows[0].end_min) == (600, 780)
    assert under20.windows[0].weekdays == [5, 6]
    assert under20.windows[0].end_min == 1440
    # Without a version the content decides it: same file, same version; any edit, another.
    again = load_policy(write(tmp_path, CURFEW), issued_ms=2)
    assert again.version == policy.version
    edited = load_policy(write(tmp_path, CURFEW.replace("3600", "7200")), issued_ms=3)
    assert edited.version != policy.version


def test_no_file_restricts_nobody() -> None:
    policy = load_policy(None, issued_ms=1)
    assert policy.rules == []
    assert policy.offline_unknown is Behaviour.ALLOW_FLAGGED


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[[rules]]\ngroup = "toddlers"\n', "rules[0].group"),
        (
            RULE + '{ days = ["mon"], start = "13:00", end = "10:00" }]\n',
            "rules[0].windows[0]",
        ),
        (
            RULE + '{ days = ["funday"], start = "10:00", end = "11:00" }]\n',
            "rules[0].windows[0].days",
        ),
        (
            RULE + '{ days = ["mon"], start = "10:60", end = "11:00" }]\n',
            "rules[0].windows[0].start",
        ),
        ('timezone = "Mars/Olympus"\n', "timezone"),
        ("max_list_age_s = 5\n", "max_list_age_s"),
        ('offline_unknown = "maybe"\n', "offline_unknown"),
        ('[[rules]]\ngroup = "65+"\n[[rules]]\ngroup = "65+"\n', "rules"),
        ("colour = 1\n", "colour"),
    ],
)
def test_mistakes_name_the_place(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(PolicyError, match="^" + re.escape(where)):
        load_policy(write(tmp_path, text), issued_ms=1)


def test_source_reloads_and_keeps_the_last_good(tmp_path: Path) -> None:
    signer = ListSigner.generate("depot-test")
    path = write(tmp_path, "version = 1\n")
    source = PolicySource(path, signer)
    assert source.current().policy.version == 1
    path.write_text("version = 2\nmax_list_age_s = 600\n", encoding="utf-8")
    os.utime(path, ns=(1, 10**18))
    current = source.current()
    assert current.policy.version == 2
    body = unseal(signer.verifier(), codec.decode(Signed, current.wire))
    assert codec.decode(Policy, body).max_list_age_s == 600
    path.write_text("version = 3\nmax_list_age_s = 'soon'\n", encoding="utf-8")
    os.utime(path, ns=(1, 2 * 10**18))
    assert source.current().policy.version == 2
