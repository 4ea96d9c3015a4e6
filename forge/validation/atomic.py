"""Writing a file so that readers see the old content or the new one, never half of either."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    """Several forge processes, and threads of one, may write the same cache entry at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_cache_entry(path: Path, text: str) -> None:
    """A cache that cannot be written (FORGE_HOME read-only, full disk) costs time, not results."""
    with contextlib.suppress(OSError):
        write_atomically(path, text)
