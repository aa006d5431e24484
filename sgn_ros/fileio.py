# Atomic file writes, shared by every module that writes a file a reader may open at any moment
# (checkpoints, dataset caches, evaluation outputs, pictures, the demo's reports).
#
# The one pattern, written once: the caller writes to a temporary file in the same directory as
# the final name (so the rename stays within one filesystem), the file is optionally fsync'ed,
# then os.replace'd over the final name; on any error the temporary is removed and the error
# re-raised, so a reader sees either the old file or the new one, never a truncated one.
# Temporaries are named ``.<final name>.<random>.tmp`` (hidden, ``.tmp`` suffix): the pattern
# `sgn_ros.training.checkpointing.CheckpointManager.remove_stale_temporaries` deletes after a
# run was killed mid-write.
"""`atomic_path`: write a file through a temporary beside it, then move it over the final name."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_SUFFIX = ".tmp"


def default_file_mode() -> int:
    """0o666 minus the process umask: what open() would have given (mkstemp makes files 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """fsync a directory (makes a rename in it durable); a no-op where that is not possible."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(
    path: str | os.PathLike[str],
    fsync: bool = True,
    *,
    mode: int | None = None,
    sync_dir: bool = False,
) -> Iterator[Path]:
    """Yield a fresh temporary path beside `path`; on normal exit move it over `path`.

    The temporary (``.<name>.<random>.tmp`` in ``path``'s directory) exists, empty, when yielded;
    the caller writes it by name (and closes it) inside the ``with`` block. The directory of
    `path` must exist.

    Args:
        path: the final file name.
        fsync: fsync the temporary's contents before the rename.
        mode: permission bits of the final file; None gives what open() would (0o666 minus the
            umask), not mkstemp's private 0o600: checkpoints, pictures and predictions are
            ordinary outputs that other users and processes read.
        sync_dir: fsync the directory after the rename (durability of the rename itself).

    On an exception in the block (or in the fsync / rename) the temporary is removed and the
    exception re-raised; `path` is left as it was.
    """
    final = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=TMP_SUFFIX, dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if fsync:
            _fsync_file(tmp)
        os.chmod(tmp, default_file_mode() if mode is None else mode)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(final.parent)
