"""Numbers and names from the command line, checked before anything uses them.

NaN passes every range check written as a comparison (all comparisons with NaN are false) and an
infinity overflows the arithmetic that follows, so each numeric option is checked here: finite, within a
range that no real use leaves, else a usage error (exit 2) naming the option.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from vllm_launcher.base.errors import ConfigError

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


# ------------------------------------------------------------------------------------------- names
# One validator for every name a user gives (preset names, `--save` names, server names, served model
# names, gateway aliases): the same checks (length, characters, reserved names) and the same message.


@dataclass(frozen=True)
class NameKind:
    """What one kind of name may be: WHAT (for the message), at most MAX_LENGTH characters of ALLOWED,
    starting with a letter or digit, never one of RESERVED_SUFFIXES or containing '..'."""

    what: str
    max_length: int
    allowed: str  # the regex class of the characters after the first
    allowed_words: str
    reserved_suffixes: tuple[str, ...] = ()
    why_reserved: str = ""


# Preset and server names become file names (records, logs, presets/NAME.yaml), systemd unit names and
# Kubernetes labels: one path component, never taken for an option (no leading '-'), ASCII, short. A name
# ending in .yaml/.yml is read as a file wherever a preset is expected, so no preset could be called so.
PRESET_NAME = NameKind("preset name", 64, r"A-Za-z0-9._-", "letters, digits, '.', '_' or '-'",
                       (".yaml", ".yml"), "(taken for a file: `vllm-launch show x.yaml` reads a file)")
SERVER_NAME = NameKind("server name", 64, r"A-Za-z0-9._-", "letters, digits, '.', '_' or '-'",
                       (".yaml", ".yml"), "(taken for a preset file by `up`)")
# What clients put in a request's "model": repo ids (Qwen/Qwen2.5-7B-Instruct), tags (qwen2.5:7b), ...
# but no spaces, control characters or leading '-' (it reaches vLLM's argv and every rendered file).
SERVED_NAME = NameKind("served model name", 256, r"A-Za-z0-9._:/@+-",
                       "letters, digits, '.', '_', '-', ':', '/', '@' or '+'")
ALIAS_NAME = NameKind("alias", 256, SERVED_NAME.allowed, SERVED_NAME.allowed_words)


def shown(value: object, limit: int = 80) -> str:
    """VALUE as a message quotes it: repr (control characters visible), cut to LIMIT characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def name_problem(name: object, kind: NameKind) -> str | None:
    """The one message for a NAME that cannot be a KIND, or None when it can."""
    what = ("an " if kind.what[0] in "aeiou" else "a ") + kind.what
    rule = (f"use 1-{kind.max_length} of {kind.allowed_words}, starting with a letter or digit"
            + (", without '..'" if "." in kind.allowed else ""))
    if not isinstance(name, str):
        return f"{shown(name)} is not {what}: {rule}"
    pattern = re.compile(rf"[A-Za-z0-9][{kind.allowed}]{{0,{kind.max_length - 1}}}")
    if not pattern.fullmatch(name) or ".." in name:
        too_long = f" ({len(name)} characters)" if len(name) > kind.max_length else ""
        return f"{shown(name)} is not {what}{too_long}: {rule}"
    if name.lower().endswith(kind.reserved_suffixes):
        return f"{shown(name)} is not {what}: it may not end in {'/'.join(kind.reserved_suffixes)} " \
               f"{kind.why_reserved}".rstrip()
    return None


def check_name(name: str, kind: NameKind, option: str | None = None) -> str:
    """NAME unchanged when it can be a KIND; else ConfigError (exit 2, one line) naming OPTION."""
    problem = name_problem(name, kind)
    if problem:
        raise ConfigError(problem, field=option)
    return name


def valid_name(name: str) -> bool:
    """Whether NAME can name a server (a record's file name)."""
    return name_problem(name, SERVER_NAME) is None


def check_server_name(option: str, name: str) -> str:
    """NAME unchanged when it can name a server (a file name, a unit name); else ConfigError."""
    return check_name(name, SERVER_NAME, option)
