"""Where things live on disk: built-in presets, user presets, state, cache (XDG base directories)."""

from __future__ import annotations

import os
from pathlib import Path

APP = "vllm-launch"


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / fallback


def builtin_presets_dir() -> Path:
    """The presets shipped with the package: inside the wheel, or the repository's top-level `presets/`."""
    packaged = Path(__file__).parent.parent / "presets"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent.parent / "presets"


def user_presets_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / APP / "presets"


def state_dir() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state") / APP


def cache_dir() -> Path:
    return _xdg("XDG_CACHE_HOME", ".cache") / APP
