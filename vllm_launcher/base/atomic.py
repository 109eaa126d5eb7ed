"""Atomic file writes: a reader sees the old content or the new, never half of it (stdlib only, so the
detached supervisor and the cached render path can use it without loading anything heavy)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_text(path: Path, text: str, *, mode: int = 0o644, durable: bool = True) -> None:
    """Write TEXT to PATH through a temporary file in the same directory and a rename. `durable`: fsync
    before the rename (state records, presets); caches skip it. The directory must exist."""
    write_all({path: (text, mode)}, durable=durable)


def write_all(files: dict[Path, tuple[str, int]], *, durable: bool = False) -> None:
    """Write several files as one: each to a temporary file beside it first, then all renamed. If any write
    fails (a full disk), every temporary file is removed and no target has changed: never a half set."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, (text, mode) in files.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            staged.append((tmp, path))
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                if durable:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.chmod(tmp, mode)
        for tmp, path in staged:
            os.replace(tmp, path)  # same directory, same file system: needs no space
    except BaseException:
        for tmp, _path in staged:
            Path(tmp).unlink(missing_ok=True)
        raise
