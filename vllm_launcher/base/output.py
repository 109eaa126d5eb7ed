"""The one place that prints: command results (human text or `--json`), plain tables, and one-line errors.

Command bodies (vllm_launcher.commands) return a `Result`; the CLI hands it to `emit`. Interactive commands
(`up` while it starts, `logs -f`, `status --watch`) also print as they go, through `out` and `err` here or
the start-up display (supervise.display).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

PROG = "vllm-launch"


@dataclass
class Result:
    """What a command produced. `text` (stdout) for people, `data` for `--json` (printed instead of `text`
    when `as_json`), `notes` (stderr, as they are), `errors` (stderr, one `vllm-launch: error:` line each),
    and the exit code."""

    text: str | None = None
    data: Any = None
    as_json: bool = False
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    code: int = 0


def emit(result: Result | int | None) -> int:
    """Print RESULT; returns its exit code (a bare int or None from an interactive command: as is, or 0)."""
    if not isinstance(result, Result):
        return result or 0
    if result.as_json:
        print_json(result.data)
    elif result.text is not None:
        out(result.text.rstrip("\n"))
    for note in result.notes:
        err(note)
    for message in result.errors:
        error_line(message)
    return result.code


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


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned table (no colours: cheap to import, stable to diff and grep)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else printable(str(c)).replace("\n", " ")
                                             for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cells]
    return "\n".join(lines)
