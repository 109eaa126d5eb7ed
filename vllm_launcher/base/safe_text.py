"""What a preset string may hold before it reaches an argv, a script, a YAML document or a unit file.

Every rendered format quotes with its own serializer; this module is the other half: characters that no
serializer can carry faithfully everywhere (NUL cannot be in argv or the environment at all; line
breaks end comments, YAML lines and unit-file directives; bidirectional overrides make a terminal show
something else than what runs) are refused at validation, with the field and the character named.
Stdlib only (unicodedata): the cached render path must not pay for it.
"""

from __future__ import annotations

import re
import unicodedata

# Unicode categories refused in plain-text fields: controls (C0, DEL, C1 incl. NEL U+0085), format
# characters (zero-width, bidi overrides), surrogates, and the line/paragraph separators U+2028/U+2029,
# which YAML 1.1 and many terminals treat as line breaks.
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Every character that some format we write reads as the end of a line (shell, YAML, systemd, JSON text).
LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")

# A host vLLM can bind: an IPv4/IPv6 literal or a DNS name (RFC 1123 labels).
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?")


def char_name(char: str) -> str:
    """`U+000A (LINE FEED)`: a character that cannot be shown as itself."""
    name = unicodedata.name(char, "") or {"\n": "LINE FEED", "\r": "CARRIAGE RETURN", "\t": "TAB",
                                         "\0": "NUL"}.get(char, "control character")
    return f"U+{ord(char):04X} ({name})"


def forbidden_char(value: str, allow: str = "") -> str | None:
    """The first character of VALUE that a plain-text field may not hold (ALLOW: exceptions), else None."""
    for char in value:
        if char in allow:
            continue
        if unicodedata.category(char) in FORBIDDEN_CATEGORIES:
            return char
    return None


def check_plain(value: str, allow: str = "") -> str:
    """VALUE unchanged when it holds no control, format or line-separator character; else ValueError."""
    bad = forbidden_char(value, allow)
    if bad is not None:
        raise ValueError(f"contains the control character {char_name(bad)}; it cannot be quoted safely "
                         "in every rendered format (shell, YAML, systemd), so it is refused")
    return value


def check_not_option(value: str) -> str:
    """VALUE unchanged unless it starts with '-' (vLLM's parser would read it as another flag)."""
    if value.startswith("-"):
        raise ValueError(f"{value!r} starts with '-', which vLLM would read as a flag, not a value")
    return value


def check_host(value: str) -> str:
    """An address vLLM can bind: IPv4, IPv6 or a DNS name; anything else is refused."""
    check_plain(value)
    if _HOSTNAME.fullmatch(value) and len(value) <= 253:
        return value
    if ":" in value and _IPV6.fullmatch(value):
        return value
    raise ValueError(f"{value!r} is not an IP address or host name (e.g. 127.0.0.1, 0.0.0.0, ::1, localhost)")


_COMMENT_BARE = re.compile(r"[A-Za-z0-9_.,/@:+=~-]+")


def comment_safe(value: str) -> str:
    """VALUE as it may appear inside a comment of any rendered file: as itself when it is a plain word
    (model ids, paths), else JSON-quoted and ASCII-only, so no line break, quote, backslash or non-ASCII
    character of the preset reaches the comment as itself."""
    if _COMMENT_BARE.fullmatch(value):
        return value
    import json

    return json.dumps(value, ensure_ascii=True)


def printable(text: str) -> str:
    """TEXT from outside (a server's answer, a file) on one terminal line: control characters shown
    escaped, never sent to the terminal as they are."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def assert_single_line(text: str) -> str:
    """TEXT unchanged; raises ValueError when it holds a line break of any format (a bug in the caller:
    comment headers are built from validated values only)."""
    for char in text:
        if char in LINE_BREAKS:
            raise ValueError(f"internal error: a header line holds {char_name(char)}: {text!r}")
    return text
