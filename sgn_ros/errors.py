# The project's error types for bad input data, shared by readers, CLIs and nodes: a CLI catches
# them to print one line and exit 2, a node to log, count and skip. They subclass ValueError so
# existing `except ValueError` handlers keep working.
"""Error types: `DataError` (a data file exists but is unusable)."""

from __future__ import annotations

import os
from pathlib import Path


class DataError(ValueError):
    """A data file is missing something, truncated or holds invalid values.

    The message names the file and what is wrong; `path` carries the offending file (None where
    the error is not about one file) so that callers can report or skip it without parsing text.
    """

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)
