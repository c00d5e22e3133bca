"""The benchmark table: targets judged right, figures formatted for people, settings layered."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.settings import QUICK, load
from bench.table import (
    Basis,
    Bound,
    Reference,
    Result,
    Target,
    format_number,
    render_json,
    render_markdown,
    render_text,
)
from runtime.config import ConfigError

RATE = Target(Bound.AT_LEAST, 50_000.0)
SHARE = Target(Bound.AT_LEAST, 0.40, Basis.RATIO)
P99 = Target(Bound.BELOW, 5.0)


def test_a_missed_ceiling_says_how_far_over() -> None:
    row = Result("decision", "p99", 6.0, "ms", Reference("bare commit p99", 0.5), (P99,))
    assert row.cells()[-2:] == ("< 5.00 ms", "MISSED (+20% over)")
    assert row.met is False


def test_a_missed_floor_says_how_far_short() -> None:
    row = Result("ingest", "taps/s", 40_000.0, "/s", Reference("COPY", 200_000.0), (RATE, SHARE))
    assert row.ratio == pytest.approx(0.2)
    assert row.cells()[-2:] == (
        ">= 50,000 /s; >= 40% of ref",
        "MISSED (20% short); MISSED (50% short)",
    )


def test_targets_met_and_missed_are_reported_separately() -> None:
    row = Result("ingest", "taps/s", 60_000.0, "/s", Reference("COPY", 200_000.0), (RATE, SHARE))
    assert row.cells()[-1] == "met; MISSED (25% short)"
    assert row.met is False


def test_exactly_on_an_inclusive_bound_is_met_and_on_a_strict_one_is_not() -> None:
    assert Target(Bound.AT_MOST, 16.0).check(16.0, None).met
    assert not Target(Bound.BELOW, 5.0).check(5.0, None).met


def test_a_ratio_target_without_a_reference_is_missed_not_met() -> None:
    row = Result("ingest", "taps/s", 60_000.0, "/s", None, (SHARE,))
    assert row.ratio is None
    assert row.cells()[-1] == "MISSED (no value)"


def test_a_row_without_reference_or_target_leaves_those_cells_empty() -> None:
    cells = Result("export", "rows/s", 123_456.7, "/s").cells()
    assert cells[2] == "123,457"
    assert cells[4:] == ("", "", "", "", "")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (1_234_567.0, "1,234,567"),
        (482.4, "482"),
        (16.0, "16.0"),
        (3.4, "3.40"),
        (0.0482, "0.0482"),
        (0.0, "0.00"),
        (math.nan, "n/a"),
    ],
)
def test_numbers_have_three_significant_digits(value: float, shown: str) -> None:
    assert format_number(value) == shown


def test_text_and_markdown_tables_have_one_line_per_row_and_aligned_columns() -> None:
    rows = [
        Result("decision", "p99", 3.4, "ms", Reference("bare", 0.5), (P99,)),
        Result("ingest", "taps/s, 64 validators", 61_711.0, "/s", Reference("COPY", 239_435.0)),
    ]
    text = render_text(rows).splitlines()
    assert len(text) == 4
    assert text[0].startswith("section")
    assert len({line.index("ms") for line in text[2:3]}) == 1
    markdown = render_markdown(rows).splitlines()
    assert markdown[0].startswith("| section | measure | value |")
    assert markdown[1].startswith("|---|---|---:|")
    assert markdown[3] == (
        "| ingest | taps/s, 64 validators | 61,711 | /s | COPY | 239,435 | 0.26x |  |  |"
    )


def test_json_carries_values_verdicts_and_context() -> None:
    row = Result("decision", "p99", 6.0, "ms", Reference("bare", 0.5), (P99,))
    document = json.loads(render_json([row], {"cores": "2"}))
    assert document["context"] == {"cores": "2"}
    (result,) = document["results"]
    assert result["ratio"] == pytest.approx(12.0)
    assert result["targets"] == [
        {"target": "< 5.00 ms", "met": False, "shortfall": pytest.approx(0.2)}
    ]


def test_settings_layer_quick_then_file_then_environment_then_flags(tmp_path: Path) -> None:
    toml = tmp_path / "bench.toml"
    toml.write_text("[bench.ingest]\ntaps = 96000\n[bench.decision]\ntaps = 700\n")
    config = load(
        toml,
        quick=True,
        flags={"decision": {"taps": 900}},
        env={"HESGATE_BENCH__INGEST__VALIDATORS": "4,8", "HESGATE_DATABASE__DSN": "ignored"},
    )
    assert config.risklist.sizes == tuple(QUICK["risklist"]["sizes"])
    assert config.ingest.taps == 96_000
    assert config.ingest.validators == (4, 8)
    assert config.decision.taps == 900


def test_a_bad_setting_names_its_key() -> None:
    with pytest.raises(ConfigError, match="sections: unknown 'nonsense'"):
        load(flags={"sections": ["risklist", "nonsense"]}, env={})
    with pytest.raises(ConfigError, match=r"ingest\.taps: at least one batch per validator"):
        load(flags={"ingest": {"taps": 10, "validators": [64]}}, env={})
