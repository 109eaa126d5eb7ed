"""Results cached on disk and keyed on the stat of the files they were built from (like .pyc files).

Used for validated launch plans and rendered deployment files (`render`), through `cached`, so that a
repeated `render` needs neither YAML nor pydantic. An entry's key holds everything the result depends on
besides files (preset reference, overrides, format, interpreter, working directory, XDG locations); the
entry stores the stat signature of every file and directory it was built from, and any change to one of
them (an edit, a new user preset that shadows a built-in, a removed parent) misses and rebuilds. Only
successful results are stored: errors always come from a full validation.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vllm_launcher.base import paths

if TYPE_CHECKING:
    from vllm_launcher.preset.schema import ResolvedPreset

FORMAT_VERSION = 1


def signature(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino]


def entry_path(kind: str, key_parts: list[Any]) -> Path:
    """The cache file for a result of `kind` ("plans", "renders") identified by `key_parts`."""
    from vllm_launcher import __version__

    key = json.dumps([FORMAT_VERSION, __version__, *key_parts, sys.executable, os.getcwd(),
                      str(paths.builtin_presets_dir()), str(paths.user_presets_dir()),
                      str(paths.cache_dir())],
                     default=str)
    return paths.cache_dir() / kind / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")


def load(entry: Path) -> Any | None:
    """The cached value, or None when absent, unreadable, or any file it depends on changed."""
    try:
        record = json.loads(entry.read_text(encoding="utf-8"))
        if any(signature(dep) != sig for dep, sig in record["deps"]):
            return None
        return record["value"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store(entry: Path, value: Any, deps: list[str]) -> None:
    """Write atomically (temp file + rename); a read-only cache only costs speed."""
    record = {"value": value, "deps": [[dep, signature(dep)] for dep in deps]}
    try:
        from vllm_launcher.base import atomic  # tempfile: only a cache miss writes

        entry.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(entry, json.dumps(record), durable=False)
    except OSError:
        pass


def preset_deps(ref: str, resolved: ResolvedPreset) -> list[str]:
    """What a resolved preset depends on: its files, and the preset directories (adding or removing a file
    there can change which file a name resolves to)."""
    deps = [str(paths.builtin_presets_dir()), str(paths.user_presets_dir()), *resolved.chain]
    if ref.endswith((".yaml", ".yml")) or "/" in ref:
        deps.append(str(Path(ref).parent))
    return deps


def cached(kind: str, key_parts: list[Any], build: Callable[[], tuple[Any, list[str]]]) -> Any:
    """The value of KIND for KEY_PARTS: from the cache when nothing it depends on changed, else BUILD() ->
    (value, the files and directories it was built from), stored for next time. BUILD raises for bad input;
    errors are never cached."""
    entry = entry_path(kind, key_parts)
    value = load(entry)
    if value is not None:
        return value
    value, deps = build()
    store(entry, value, deps)
    return value
