"""How long each preset took to become ready on this machine: an ETA for the progress display and the
size of the stall timeout (a start that usually takes 30 s and has shown nothing new for minutes is stuck).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from vllm_launcher.base import paths
from vllm_launcher.machine.records import atomic_write_json, file_lock

KEEP = 5  # the last few starts: the machine and vLLM version change over time
# Without history: the first start may download weights or compile kernels, with long silences.
DEFAULT_STALL_S = 600.0
MIN_STALL_S = 120.0
STALL_FACTOR = 3.0


def history_path() -> Path:
    return paths.state_dir() / "ready-times.json"


def key_for(preset: str, model: str, device: str) -> str:
    return f"{preset}|{model}|{device}"


def _load() -> dict[str, list[float]]:
    try:
        data = json.loads(history_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_ready(key: str, seconds: float) -> None:
    path = history_path()
    with file_lock(path.with_suffix(".lock"), timeout_s=5.0):
        data = _load()
        times = [*[float(t) for t in data.get(key, [])][-(KEEP - 1):], round(seconds, 3)]
        data[key] = times
        atomic_write_json(path, data)


def eta_s(key: str) -> float | None:
    """The median ready time of the last starts, or None without history."""
    times = _load().get(key)
    return float(statistics.median(times)) if times else None


def stall_timeout_s(eta: float | None) -> float:
    """How long the log may stay silent before the start counts as stuck."""
    if eta is None:
        return DEFAULT_STALL_S
    return max(MIN_STALL_S, STALL_FACTOR * eta)
