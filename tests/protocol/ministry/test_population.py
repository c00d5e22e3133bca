"""The simulated population: generated from a seed, loaded, exported, changed on schedule."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import hescode, tckn
from protocol.ministry.simulator import (
    FAR_FUTURE,
    Population,
    PopulationError,
    PopulationRecord,
    ScheduledChange,
)
from protocol.risk import HealthStatus
from tests.protocol.ministry.helpers import NOW


def record(code: str = "AAAAAAAAAA", **changes: object) -> PopulationRecord:
    values: dict[str, object] = {
        "hes_code": code,
        "tckn": "10000000146",
        "first_name": "AYŞE",
        "last_name": "YILMAZ",
        "status": HealthStatus.RISKLESS,
        "expires_at": NOW + dt.timedelta(days=30),
    }
    values.update(changes)
    return PopulationRecord(**values)  # type: ignore[arg-type]


def test_the_same_seed_gives_the_same_people_and_a_bigger_size_extends_them() -> None:
    small = list(Population.generate(11, 50, now=NOW))
    again = list(Population.generate(11, 50, now=NOW))
    bigger = list(Population.generate(11, 80, now=NOW))
    other = list(Population.generate(12, 50, now=NOW))
    assert small == again
    assert bigger[:50] == small
    assert [r.hes_code for r in other] != [r.hes_code for r in small]


def test_identities_do_not_depend_on_the_reference_time() -> None:
    today = list(Population.generate(5, 30, now=NOW))
    later = list(Population.generate(5, 30, now=NOW + dt.timedelta(days=9)))
    assert [(r.hes_code, r.tckn, r.first_name, r.status) for r in today] == [
        (r.hes_code, r.tckn, r.first_name, r.status) for r in later
    ]


def test_generated_people_are_valid_and_varied() -> None:
    people = list(Population.generate(3, 2000, now=NOW))
    assert len({r.hes_code for r in people}) == 2000
    assert all(hescode.is_valid(r.hes_code) and tckn.is_valid(r.tckn) for r in people)
    risky = sum(r.status is HealthStatus.RISKY for r in people) / len(people)
    expired = [r for r in people if r.expired(NOW)]
    forever = [r for r in people if r.expires_at == FAR_FUTURE]
    assert 0.02 < risky < 0.09
    assert 10 < len(expired) < 80
    assert 120 < len(forever) < 280
    assert all(r.expires_at > NOW for r in people if r not in expired)
    assert {r.is_vaccinated for r in people} == {True, False}


def test_rates_shape_the_population() -> None:
    people = list(
        Population.generate(
            3, 200, now=NOW, risky_rate=1.0, expired_rate=0.0, never_expires_rate=0.0
        )
    )
    assert all(r.status is HealthStatus.RISKY and not r.expired(NOW) for r in people)


@pytest.mark.parametrize(
    "kwargs",
    [{"size": -1}, {"risky_rate": 1.5}, {"expired_rate": 0.6, "never_expires_rate": 0.6}],
)
def test_nonsense_generation_settings_are_refused(kwargs: dict[str, float]) -> None:
    values = {"size": 10, **kwargs}
    size = int(values.pop("size"))
    with pytest.raises(PopulationError):
        Population.generate(1, size, now=NOW, **values)


def test_csv_and_json_files_round_trip(tmp_path: Path) -> None:
    population = Population.generate(4, 40, now=NOW)
    first = population.codes()[0]
    population.schedule(ScheduledChange(NOW + dt.timedelta(hours=2), first, HealthStatus.RISKY))
    population.dump(tmp_path / "people.csv")
    population.dump(tmp_path / "people.json")
    from_csv = Population.load(tmp_path / "people.csv")
    from_json = Population.load(tmp_path / "people.json")
    assert list(from_csv) == list(population)
    assert list(from_json) == list(population)
    assert from_json.pending() == population.pending()
    assert from_csv.pending() == []  # CSV holds records only


def test_a_bare_json_list_of_records_loads() -> None:
    data = [
        {
            "hes_code": "abcd-efgh-12",
            "tckn": "10000000146",
            "first_name": "EGE",
            "last_name": "KOÇ",
            "status": "risky",
            "expires_at": "2027-01-01T00:00:00+03:00",
        }
    ]
    (only,) = Population.from_json(data)
    assert only.hes_code == "ABCDEFGH12"
    assert only.status is HealthStatus.RISKY
    assert only.expires_at == dt.datetime(2026, 12, 31, 21, 0, tzinfo=dt.UTC)
    assert only.is_vaccinated is None


@pytest.mark.parametrize(
    ("change", "where", "field"),
    [
        ({"tckn": "10000000147"}, "line 3", "tckn"),
        ({"hes_code": "SHORT"}, "line 3", "hes_code"),
        ({"status": "GREEN"}, "line 3", "status"),
        ({"expires_at": "2027-01-01T00:00:00"}, "line 3", "expires_at"),
        ({"is_vaccinated": "maybe"}, "line 3", "is_vaccinated"),
        ({"hes_code": "AAAAAAAAAA"}, "", "twice"),
    ],
)
def test_a_bad_csv_row_is_named(change: dict[str, str], where: str, field: str) -> None:
    population = Population(
        [record("AAAAAAAAAA"), record("BBBBBBBBBB", last_negative_test=NOW, is_immune=False)]
    )
    lines = population.to_csv().splitlines()
    header = lines[0].split(",")
    row = dict(zip(header, lines[2].split(","), strict=True))
    row.update(change)
    lines[2] = ",".join(row[name] for name in header)
    with pytest.raises(PopulationError, match=field) as caught:
        Population.from_csv("\n".join(lines) + "\n", source="people.csv")
    assert where in str(caught.value)
    assert "people.csv" in str(caught.value)


def test_a_csv_without_the_needed_columns_is_refused() -> None:
    with pytest.raises(PopulationError, match="tckn"):
        Population.from_csv("hes_code,status\nAAAAAAAAAA,RISKY\n")


@pytest.mark.parametrize(
    ("name", "content"),
    [("people.txt", "x"), ("people.json", "{not json"), ("people.json", '{"people": []}')],
)
def test_bad_population_files_are_refused(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PopulationError):
        Population.load(path)


def test_a_missing_population_file_is_a_population_error(tmp_path: Path) -> None:
    with pytest.raises(PopulationError, match="cannot read"):
        Population.load(tmp_path / "nobody.csv")


def test_scheduled_changes_apply_in_time_order_when_due() -> None:
    population = Population([record()])
    population.schedule(
        ScheduledChange(NOW + dt.timedelta(hours=2), "AAAAAAAAAA", HealthStatus.RISKLESS)
    )
    population.schedule(
        ScheduledChange(NOW + dt.timedelta(hours=1), "AAAAAAAAAA", HealthStatus.RISKY)
    )
    new_expiry = NOW + dt.timedelta(days=400)
    population.schedule(
        ScheduledChange(NOW + dt.timedelta(hours=3), "AAAAAAAAAA", expires_at=new_expiry)
    )
    now = population.lookup("AAAAAAAAAA", NOW)
    assert now is not None
    assert now.status is HealthStatus.RISKLESS
    at_1h = population.lookup("AAAAAAAAAA", NOW + dt.timedelta(hours=1))
    assert at_1h is not None
    assert at_1h.status is HealthStatus.RISKY
    at_3h = population.lookup("AAAAAAAAAA", NOW + dt.timedelta(hours=3))
    assert at_3h is not None
    assert at_3h.status is HealthStatus.RISKLESS
    assert at_3h.expires_at == new_expiry
    assert population.pending() == []


def test_a_change_can_expire_a_code() -> None:
    population = Population([record()])
    population.schedule(
        ScheduledChange(NOW + dt.timedelta(minutes=5), "AAAAAAAAAA", expires_at=NOW)
    )
    later = NOW + dt.timedelta(minutes=5)
    found = population.lookup("AAAAAAAAAA", later)
    assert found is not None
    assert found.expired(later)


def test_changes_for_unknown_codes_or_with_nothing_to_change_are_refused() -> None:
    population = Population([record()])
    with pytest.raises(PopulationError, match="unknown code"):
        population.schedule(ScheduledChange(NOW, "BBBBBBBBBB", HealthStatus.RISKY))
    with pytest.raises(PopulationError, match="status or an expiry"):
        ScheduledChange(NOW, "AAAAAAAAAA")
    with pytest.raises(PopulationError, match="offset"):
        ScheduledChange(dt.datetime(2026, 1, 1), "AAAAAAAAAA", HealthStatus.RISKY)


def test_records_check_their_own_fields() -> None:
    with pytest.raises(PopulationError, match="tckn"):
        record(tckn="12345678901")
    with pytest.raises(PopulationError, match="hes_code"):
        record("aaaa-aaaa-aa")
    with pytest.raises(PopulationError, match="offset"):
        record(expires_at=dt.datetime(2027, 1, 1))
    with pytest.raises(PopulationError, match="twice"):
        Population([record(), record()])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), size=st.integers(min_value=0, max_value=30))
def test_any_generated_population_survives_both_file_formats(seed: int, size: int) -> None:
    population = Population.generate(seed, size, now=NOW)
    assert list(Population.from_csv(population.to_csv())) == list(population)
    assert list(Population.from_json(json.loads(json.dumps(population.to_json())))) == list(
        population
    )
