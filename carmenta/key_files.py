"""Secrets generated once and kept in DATA_DIR/keys (development defaults)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_once(path: Path, content: bytes) -> bool:
    """Create `path` holding `content`, readable by the owner only, unless it exists.

    Returns True when this call created the file, False when it was already there.
    The content is written whole under a temporary name (mkstemp creates it 0600) and
    then linked into place: linking never replaces an existing file, so when two
    processes start at once exactly one of them wins and the other reads its file.
    """
    folder = path.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        except OSError:
            # Some mounted volumes have no hard links: fall back to an exclusive create.
            try:
                exclusive = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return False
            with os.fdopen(exclusive, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
