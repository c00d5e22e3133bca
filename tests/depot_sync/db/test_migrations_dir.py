from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from depot_sync.config import DatabaseSection
from depot_sync.db.migrations import discover
from depot_sync.db.migrations_dir import (
    CHECKOUT_MIGRATIONS_DIR,
    PACKAGED_MIGRATIONS_DIR,
    default_migrations_dir,
)

REPO = Path(__file__).resolve().parents[3]
FIND = """
import json
from depot_sync.config import DEFAULT_MIGRATIONS_DIR
from depot_sync.db import migrations_dir
from depot_sync.db.migrations import discover
found = migrations_dir.default_migrations_dir()
print(json.dumps({"module": migrations_dir.__file__, "dir": str(found),
                  "config": str(DEFAULT_MIGRATIONS_DIR),
                  "files": [m.label for m in discover(found)]}))
"""


def test_a_checkout_finds_the_repositorys_sql() -> None:
    assert not PACKAGED_MIGRATIONS_DIR.exists()
    assert default_migrations_dir() == CHECKOUT_MIGRATIONS_DIR == REPO / "sql"
    assert DatabaseSection().migrations_dir == REPO / "sql"
    assert discover(default_migrations_dir())


@pytest.mark.slow
def test_the_wheel_carries_the_migrations_and_an_install_finds_them(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        timeout=50,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("hesgate-*.whl")
    repo_sql = {p.name: p.read_bytes() for p in (REPO / "sql").glob("*.sql")}
    with zipfile.ZipFile(wheel) as archive:
        packaged = {
            name.removeprefix("depot_sync/sql/"): archive.read(name)
            for name in archive.namelist()
            if name.startswith("depot_sync/sql/")
        }
        assert not [n for n in archive.namelist() if n.startswith("sql/")]
        site = tmp_path / "site"
        archive.extractall(site)
    assert packaged == repo_sql
    # Run from the unpacked wheel as an installed package, not from the checkout.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", FIND],
        check=True,
        timeout=30,
        capture_output=True,
        text=True,
        cwd=site,
        env=env,
    )
    found = json.loads(done.stdout)
    assert Path(found["module"]).is_relative_to(site)
    # The depot's configuration default is what an installed depot migrates from.
    assert Path(found["dir"]) == Path(found["config"]) == site / "depot_sync" / "sql"
    assert found["files"] == sorted(repo_sql)
