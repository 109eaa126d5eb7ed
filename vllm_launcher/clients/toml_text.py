"""A small TOML writer for the flat tables we add to a client's config (Codex): strings, integers and
booleans under one table header. Every string goes through `toml_string`; tomllib reads the result back
(the callers check that it means what they meant). The stdlib reads TOML but does not write it.
"""

from __future__ import annotations

import re

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(value: str) -> str:
    """VALUE as a TOML basic string: quotes, backslashes and every control character escaped."""
    out = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    return key if BARE_KEY.fullmatch(key) else toml_string(key)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return toml_string(value)
    raise TypeError(f"no TOML for {type(value).__name__}")


def toml_table(path: tuple[str, ...], values: dict[str, object]) -> str:
    """`[a.b]` and its `key = value` lines (PATH empty: the root table's lines, no header)."""
    lines = [f"[{'.'.join(toml_key(part) for part in path)}]"] if path else []
    lines += [f"{toml_key(key)} = {toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"
