"""Tests of sgn_ros.fileio: atomic writes through a temporary beside the final name."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sgn_ros.fileio import atomic_path, default_file_mode, fsync_dir
from sgn_ros.training.checkpointing import CheckpointManager


class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("fsync", [True, False])
def test_success_replaces_the_file(tmp_path: Path, fsync: bool) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(target, fsync=fsync) as tmp:
        assert tmp != target
        assert tmp.exists() and tmp.read_bytes() == b""  # created empty, ready to be written
        tmp.write_text("new")
        assert target.read_text() == "old"  # nothing visible before the block ends
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_success_creates_a_new_file(tmp_path: Path) -> None:
    target = tmp_path / "fresh.bin"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert list(tmp_path.iterdir()) == [target]


def test_exception_keeps_old_file_and_removes_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    seen: list[Path] = []
    with pytest.raises(_Boom):
        with atomic_path(target) as tmp:
            seen.append(tmp)
            tmp.write_text("half written")
            raise _Boom("writer failed")
    assert target.read_text() == "old"
    assert not seen[0].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_exception_without_old_file_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with pytest.raises(KeyboardInterrupt):  # BaseException too, not only Exception
        with atomic_path(target, fsync=False) as tmp:
            tmp.write_text("partial")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_temporary_is_beside_target_and_unique(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "model.pth"
    target.parent.mkdir()
    with atomic_path(target) as a, atomic_path(target) as b:
        assert a.parent == target.parent and b.parent == target.parent
        assert a != b
        # the name remove_stale_temporaries looks for: hidden, ".tmp" suffix, final name inside
        assert a.name.startswith(".model.pth.") and a.name.endswith(".tmp")
        a.write_text("a")
        b.write_text("b")
    assert target.read_text() == "a"  # the outer block finished last
    assert list(target.parent.iterdir()) == [target]


def test_stale_temporary_matches_checkpoint_cleanup(tmp_path: Path) -> None:
    """A temporary left by a killed writer is found by CheckpointManager.remove_stale_temporaries."""
    target = tmp_path / "epoch_1.pth"
    cm = atomic_path(target)
    tmp = cm.__enter__()  # entered, never left: what a run killed mid-write leaves behind
    tmp.write_bytes(b"partial")
    assert list(tmp_path.iterdir()) == [tmp]
    assert CheckpointManager(tmp_path).remove_stale_temporaries() == [tmp]
    assert list(tmp_path.iterdir()) == []


def test_mode_and_sync_dir(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with atomic_path(target, mode=default_file_mode(), sync_dir=True) as tmp:
        tmp.write_text("x")
    assert stat.S_IMODE(target.stat().st_mode) == default_file_mode()
    with atomic_path(target, fsync=False) as tmp:
        tmp.write_text("y")
    assert stat.S_IMODE(target.stat().st_mode) == default_file_mode()  # as open() would, not mkstemp's 0o600
    fsync_dir(tmp_path)
    fsync_dir(tmp_path / "missing")  # no error where the directory cannot be opened
