"""The garbage collector's settings while ``serve`` runs."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from depot_sync.collector import tuned_collector
from depot_sync.config import DEFAULT_GC_THRESHOLDS, DepotConfig, ServerSection
from runtime.config import ConfigError, load_config

KEYS = (
    "[keys]\n"
    f'field_key = "{"11" * 32}"\n'
    f'list_key = "{"22" * 32}"\n'
    'signing_key_file = "/nonexistent.pem"\n'
)


@pytest.fixture(autouse=True)
def python_defaults() -> Iterator[None]:
    """Each test starts from, and leaves, the collector as Python set it."""
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_serve_raises_the_thresholds_and_freezes_what_is_alive() -> None:
    before = gc.get_threshold()
    assert ServerSection().gc_thresholds == DEFAULT_GC_THRESHOLDS == (100_000, 50, 100)
    alive = [object() for _ in range(10)]
    with tuned_collector(ServerSection()):
        assert gc.get_threshold() == (100_000, 50, 100)
        assert gc.get_freeze_count() > len(alive)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_cycles_made_while_serving_are_still_collected() -> None:
    class Node:
        other: object = None

    with tuned_collector(ServerSection()):
        a, b = Node(), Node()
        a.other, b.other = b, a
        del a, b
        assert gc.collect() >= 2


def test_python_defaults_kept_when_asked() -> None:
    before = gc.get_threshold()
    with tuned_collector(ServerSection(gc_thresholds=(), gc_freeze=False)):
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0


def test_restored_when_serve_fails() -> None:
    before = gc.get_threshold()
    seen = []

    def serving() -> None:
        with tuned_collector(ServerSection(gc_thresholds=(5000, 20, 20))):
            seen.append(gc.get_threshold())
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        serving()
    assert seen == [(5000, 20, 20)]
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_configured_from_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "depot.toml"
    path.write_text(KEYS + "[server]\ngc_thresholds = [20000, 20, 30]\ngc_freeze = false\n")
    config = load_config(DepotConfig, path)
    assert (config.server.gc_thresholds, config.server.gc_freeze) == ((20000, 20, 30), False)
    config = load_config(DepotConfig, path, env={"HESGATE_SERVER__GC_THRESHOLDS": "700,10,10"})
    assert config.server.gc_thresholds == (700, 10, 10)
    path.write_text(KEYS + "[server]\ngc_thresholds = []\n")
    assert load_config(DepotConfig, path).server.gc_thresholds == ()


@pytest.mark.parametrize("bad", ["[100000, 50]", "[0, 10, 10]", "[1000, -1, 10]", "[1, 2, 3, 4]"])
def test_bad_thresholds_are_refused(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "depot.toml"
    path.write_text(KEYS + f"[server]\ngc_thresholds = {bad}\n")
    with pytest.raises(ConfigError, match=r"server.gc_thresholds: expected three positive"):
        load_config(DepotConfig, path)
