"""Numbers and names from the command line, checked before anything uses them.

NaN passes every range check written as a comparison (all comparisons with NaN are false) and an
infinity overflows the arithmetic that follows, so each numeric option is checked here: finite, within a
range that no real use leaves, else a usage error (exit 2) naming the option.
"""

from __future__ import annotations

import math
import re

from vllm_launcher.errors import ConfigError

DAY_S = 24 * 3600
# `up --timeout`: a start may take hours (a first download of a large model), never a week.
MAX_START_TIMEOUT_S = 7 * DAY_S
MAX_STOP_TIMEOUT_S = DAY_S
MAX_GPUS = 4096
MAX_GPU_MEM_GIB = 65536.0
MAX_RAM_GIB = 1 << 24
MAX_LOG_LINES = 10_000_000
# `up --restart`: when the supervisor restarts a server that exited or stopped answering after it was ready.
RESTART_MODES = ("on-failure", "always", "never")


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?")


def parse_duration(value: object, what: str = "duration") -> float:
    """Seconds from 90, "90", "90s", "10m", "2h" or "1h30m"; ValueError for anything else (NaN, negative,
    more than a week)."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a duration such as 90s, 10m or 2h, not {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        found = _DURATION.fullmatch(text) if text else None
        if found is None or not any(found.groups()):
            raise ValueError(f"{what} must be a duration such as 90s, 10m or 2h, not {value!r}")
        hours, minutes, secs = (float(g) if g else 0.0 for g in found.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_START_TIMEOUT_S:
        raise ValueError(f"{what} must be between 0 and {MAX_START_TIMEOUT_S // 86400} days, not {value!r}")
    return seconds


def check_number(option: str, value: float | None, *, low: float, high: float,
                 low_inclusive: bool = True) -> None:
    """Raise ConfigError unless VALUE (None: not given) is finite and within [LOW, HIGH] (or (LOW, HIGH])."""
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"must be a finite number, not {value}", source=option)
    too_low = value < low if low_inclusive else value <= low
    if too_low or value > high:
        bound = "at least" if low_inclusive else "more than"
        raise ConfigError(f"must be {bound} {low:g} and at most {high:g}, not {value:g}", source=option)


# Server names become file names (records, logs), so: one path component, never `..`, never taken for an
# option (no leading '-'), at most 64 characters.
SERVER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def valid_name(name: str) -> bool:
    return bool(SERVER_NAME_RE.fullmatch(name)) and ".." not in name


def check_server_name(option: str, name: str) -> str:
    """NAME unchanged when it can name a server (a file name, a unit name): 1-64 of letters, digits, '.',
    '_', '-', starting with a letter or digit, no '..'. Raises ConfigError."""
    if not valid_name(name):
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise ConfigError(f"{shown!r} is not a server name: use 1-64 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit", source=option)
    return name
