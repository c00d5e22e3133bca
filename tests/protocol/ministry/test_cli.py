"""``hes-ministry-sim``: export a population, refuse bad settings, serve as a real process."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from protocol.ministry import MinistryClient, MinistrySettings
from protocol.ministry.simulator import Population, registrations_csv
from protocol.ministry.simulator.cli import main
from protocol.risk import HealthStatus

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.usefixtures("restore_logging")
def test_export_only_writes_the_seeded_population(tmp_path: Path) -> None:
    target = tmp_path / "people.csv"
    argv = ["--user", "A:B", "--seed", "5", "--size", "40", "--export", str(target)]
    assert main([*argv, "--export-only"]) == 0
    exported = list(Population.load(target))
    expected = list(Population.generate(5, 40))
    assert [(r.hes_code, r.tckn, r.status) for r in exported] == [
        (r.hes_code, r.tckn, r.status) for r in expected
    ]


@pytest.mark.usefixtures("restore_logging")
def test_a_population_file_is_served_and_re_exported(tmp_path: Path) -> None:
    source = tmp_path / "in.json"
    Population.generate(8, 12).dump(source)
    target = tmp_path / "out.csv"
    argv = ["--user", "A:B", "--population", str(source), "--export", str(target)]
    assert main([*argv, "--export-only"]) == 0
    assert list(Population.load(target)) == list(Population.load(source))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--export-only"], "at least one user"),
        (["--user", "nopassword", "--export-only"], "NAME:PASSWORD"),
        (["--user", "A:B", "--port", "70000", "--export-only"], "port"),
        (["--user", "A:B", "--faults", '{"error_rate": 2}', "--export-only"], "error_rate"),
        (["--user", "A:B", "--faults", "[1]", "--export-only"], "JSON object"),
        (["--user", "A:B", "--faults", "{oops", "--export-only"], "Expecting"),
        (["--user", "A:B", "--population", "/nonexistent/p.csv", "--export-only"], "cannot read"),
    ],
)
@pytest.mark.usefixtures("restore_logging")
def test_bad_settings_stop_at_start_with_a_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


async def test_the_command_serves_until_terminated(tmp_path: Path) -> None:
    env = {**os.environ, "HESGATE_AUTH__USERS": "IBB-TEST:from-the-env"}
    process = await asyncio.create_subprocess_exec(
        Path(sys.executable).with_name("hes-ministry-sim"),
        "--port",
        "0",
        "--seed",
        "3",
        "--size",
        "25",
        "--faults",
        '{"latency_max_s": 0.001}',
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        listening: dict[str, object] = {}
        while not listening:
            line = await asyncio.wait_for(process.stderr.readline(), timeout=20)
            assert line, "the simulator exited before listening"
            event = json.loads(line)
            if event.get("event") == "simulator listening":
                listening = event
        assert "from-the-env" not in json.dumps(listening)
        record = next(
            r
            for r in Population.generate(3, 25)
            if r.status is HealthStatus.RISKY and not r.expired(dt.datetime.now(dt.UTC))
        )
        settings = MinistrySettings(
            str(listening["test_base_url"]), "IBB-TEST", "from-the-env", max_attempts=1
        )
        async with MinistryClient(settings) as client:
            result = await client.check(record.hes_code)
        assert result.status is HealthStatus.RISKY
        assert result.tckn_last3 == record.tckn[-3:]
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0


@pytest.mark.usefixtures("restore_logging")
def test_registrations_link_each_person_to_a_card(tmp_path: Path) -> None:
    target = tmp_path / "registrations.csv"
    argv = ["--user", "A:B", "--seed", "5", "--size", "60", "--export-registrations", str(target)]
    assert main([*argv, "--export-only"]) == 0
    rows = list(csv.DictReader(target.read_text(encoding="utf-8").splitlines()))
    people = list(Population.generate(5, 60))
    assert [(row["hes_code"], row["tckn"]) for row in rows] == [
        (r.hes_code, r.tckn) for r in people
    ]
    assert len({row["card_uid"] for row in rows}) == 60
    assert all(len(row["card_uid"]) == 14 and int(row["card_uid"], 16) >= 0 for row in rows)
    years = [int(row["birth_year"]) for row in rows]
    assert all(1940 <= year <= 2015 for year in years)
    assert min(years) < 1960  # some 65+ riders
    assert max(years) > 2006  # and some under 20
    # The same people always get the same cards.
    assert target.read_text(encoding="utf-8") == registrations_csv(Population(people))
