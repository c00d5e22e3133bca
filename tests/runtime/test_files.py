from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runtime.files import write_atomically


def test_replaces_the_file_with_the_mode_asked(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "list.pem"
    write_atomically(path, b"old")
    write_atomically(path, b"new", mode=0o600)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["list.pem"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "policy.bin"
    write_atomically(path, b"good")

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space"):
        write_atomically(path, b"half")
    assert path.read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["policy.bin"]
