from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from protocol.listsign import ListSigner
from protocol.messages import Behaviour, GroupRule, TimeWindow
from protocol.risk import Groups
from tests.validator.lists import sealed_policy
from validator.decide import DEFAULT_POLICY
from validator.policy import POLICY_NAME, PolicyRefused, PolicyStore


@pytest.fixture
def signer() -> ListSigner:
    return ListSigner.generate("test-1")


def test_default_policy_until_one_arrives(tmp_path: Path, signer: ListSigner) -> None:
    store = PolicyStore(tmp_path, signer.verifier())
    store.load()
    assert store.current is DEFAULT_POLICY
    assert store.current.offline_unknown is Behaviour.DENY
    assert store.current.stale_list is Behaviour.DENY


def test_signed_policy_is_taken_kept_and_reloaded(tmp_path: Path, signer: ListSigner) -> None:
    store = PolicyStore(tmp_path, signer.verifier())
    rules = [GroupRule(Groups.AGE_65_PLUS, [TimeWindow([0, 1, 2], 600, 780)])]
    assert store.accept(
        sealed_policy(signer, version=4, rules=rules, offline=Behaviour.ALLOW_FLAGGED)
    )
    assert store.current.version == 4
    assert store.current.rules == rules
    again = PolicyStore(tmp_path, signer.verifier())
    again.load()
    assert again.current == store.current


def test_older_or_same_policy_changes_nothing(tmp_path: Path, signer: ListSigner) -> None:
    store = PolicyStore(tmp_path, signer.verifier())
    store.accept(sealed_policy(signer, version=4, max_age_s=600))
    assert not store.accept(sealed_policy(signer, version=3, max_age_s=900))
    assert not store.accept(sealed_policy(signer, version=4, max_age_s=900))
    assert store.current.max_list_age_s == 600


def test_tampered_policy_is_refused_and_old_one_stays(tmp_path: Path, signer: ListSigner) -> None:
    store = PolicyStore(tmp_path, signer.verifier())
    store.accept(sealed_policy(signer, version=1))
    envelope = sealed_policy(signer, version=2, offline=Behaviour.ALLOW_FLAGGED)
    body = bytearray(envelope.body)
    body[-5] ^= 0x20
    with pytest.raises(PolicyRefused):
        store.accept(dataclasses.replace(envelope, body=bytes(body)))
    with pytest.raises(PolicyRefused):
        store.accept(sealed_policy(ListSigner.generate("test-1"), version=3))
    assert store.current.version == 1


def test_policy_with_unknown_time_zone_is_refused(tmp_path: Path, signer: ListSigner) -> None:
    store = PolicyStore(tmp_path, signer.verifier())
    with pytest.raises(PolicyRefused, match="time zone"):
        store.accept(sealed_policy(signer, timezone="Mars/Olympus_Mons"))
    assert store.current is DEFAULT_POLICY


def test_policy_file_altered_on_the_box_is_refused(tmp_path: Path, signer: ListSigner) -> None:
    PolicyStore(tmp_path, signer.verifier()).accept(sealed_policy(signer, version=2))
    path = tmp_path / POLICY_NAME
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    store = PolicyStore(tmp_path, signer.verifier())
    store.load()
    assert store.current is DEFAULT_POLICY
    assert store.problem is not None
