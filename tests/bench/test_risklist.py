"""The validator-start measure times what a validator does at start, on a real list."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bench.context import BenchFailure
from bench.lists import ListStore, place
from bench.risklist import check_answers, make_probe, validator_start
from validator.risklist import RiskList

ENTRIES = 20_000


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ListStore:
    return ListStore(tmp_path_factory.mktemp("lists"))


async def test_a_validator_starts_on_the_header_and_checks_the_body_after(
    store: ListStore, tmp_path: Path
) -> None:
    blist = store.get(ENTRIES)
    probe = make_probe(blist, 2000, seed=1)
    run = await validator_start(blist, tmp_path / "start", probe)
    assert run.first_s > 0
    assert run.start_s > 0
    assert run.check.work_s > 0
    assert run.check.lookups_per_s > 0
    assert not (tmp_path / "start").exists()


async def test_a_list_that_answers_other_than_its_file_fails_the_measure(
    store: ListStore, tmp_path: Path
) -> None:
    blist = store.get(ENTRIES)
    probe = make_probe(blist, 2000, seed=2)
    assert probe.listed.sum() >= probe.hits
    wrong = replace(probe, listed=np.logical_not(probe.listed))
    place(blist, tmp_path)
    risk_list = RiskList(tmp_path, blist.verifier)
    await risk_list.load()
    try:
        check_answers(risk_list, probe)
        with pytest.raises(BenchFailure, match="the validator says otherwise"):
            check_answers(risk_list, wrong)
    finally:
        await risk_list.close()
