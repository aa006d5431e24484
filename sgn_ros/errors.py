# The package's user-error types, at the bottom floor so that every layer can raise them (readers,
# checkpoint loaders, the trainer, the node). Both derive from ValueError: code that already
# catches ValueError keeps working, and the CLI turns any of them into one line and exit status 2.
"""`CheckpointError` and `DataError`: a bad input file, named with the path and what is wrong."""

from __future__ import annotations

import os

__all__ = ["SGNInputError", "CheckpointError", "DataError"]


class SGNInputError(ValueError):
    """A user-supplied file is unusable. `path` names it; the message starts with it."""

    def __init__(self, path: str | os.PathLike[str] | None, problem: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(problem if self.path is None else f"{self.path}: {problem}")


class CheckpointError(SGNInputError):
    """A checkpoint file cannot be used: truncated, empty, not a checkpoint, wrong network, or a
    training checkpoint without the state a resume needs."""


class DataError(SGNInputError):
    """A dataset file or folder is missing or malformed."""
