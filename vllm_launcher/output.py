"""The one place that prints: plain tables, YAML/JSON documents, and one-line errors with exit codes."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

PROG = "vllm-launch"


def out(text: str = "") -> None:
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    if not text:
        sys.stdout.write("\n")


def err(text: str) -> None:
    sys.stderr.write(text.rstrip("\n") + "\n")


def printable(text: str) -> str:
    """TEXT with every control, format or separator character (an ESC sequence from a hostile file name or
    record, a bidi override) shown as an escape, so nothing we print can drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\n\t" else ascii(c)[1:-1] for c in text)


def error_line(message: str) -> None:
    """One line on stderr: `vllm-launch: error: ...` (multi-line messages are folded onto one line)."""
    err(f"{PROG}: error: {printable(' '.join(message.split()))}")


def print_json(value: Any) -> None:
    out(json.dumps(value, indent=2, default=str))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned table (no colours: cheap to import, stable to diff and grep)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else printable(str(c)).replace("\n", " ")
                                             for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cells]
    return "\n".join(lines)
