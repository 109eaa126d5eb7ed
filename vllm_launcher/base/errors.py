"""Exceptions that the CLI turns into one-line messages and exit codes (never a traceback)."""

from __future__ import annotations

from pathlib import Path

# Exit codes: 2 for usage and configuration errors (as click does), 1 for everything that failed at run time.
EXIT_USAGE = 2
EXIT_FAILURE = 1


class LaunchError(Exception):
    """An error we expect and can explain in one line."""

    exit_code = EXIT_FAILURE


class ConfigError(LaunchError):
    """Bad preset, bad override, unknown preset: the user's input is wrong. Exit code 2."""

    exit_code = EXIT_USAGE

    def __init__(
        self,
        message: str,
        *,
        source: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.source = str(source) if source is not None else None
        self.line = line
        self.field = field
        super().__init__(self.render())

    def render(self) -> str:
        """`FILE:LINE: field: message`, leaving out the parts we do not know."""
        where = ""
        if self.source:
            where = self.source + (f":{self.line}" if self.line else "") + ": "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"
