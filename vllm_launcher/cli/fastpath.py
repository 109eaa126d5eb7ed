"""A stdlib-only fast path for every command: argparse instead of typer when the invocation is well-formed.

Why: typer >= 0.26 (required by vLLM's own CLI deps) builds a pydantic TypeAdapter for every option on
each run, which alone costs more than the whole `render` budget, and doubles the cost of `status`, `down`
and `logs` (0.1 s of CPU each). Well-formed invocations are parsed here with argparse, built from the same
`Param`s as the typer app; anything else (--help, a typo, a bad value) falls through to typer, which owns
help and usage errors.
"""

from __future__ import annotations

import argparse
import os

from vllm_launcher.cli.options import Param, body_arguments
from vllm_launcher.cli.table import BY_NAME, Command


class _FallThrough(Exception):
    """The fast path does not handle this invocation; let typer parse it."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _FallThrough(message)

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise _FallThrough(message)


def _add(parser: argparse.ArgumentParser, param: Param) -> None:
    if param.is_argument:
        nargs = "*" if param.many else (None if param.required else "?")
        parser.add_argument(param.dest, nargs=nargs, default=param.default)
    elif param.kind is bool:
        parser.add_argument(*param.flags, dest=param.dest, action="store_true", default=param.default)
    elif param.many:
        parser.add_argument(*param.flags, dest=param.dest, type=param.kind, action="append", default=None)
    else:
        parser.add_argument(*param.flags, dest=param.dest, type=param.kind, default=param.default,
                            choices=param.choices)


def parser_for(command: Command) -> argparse.ArgumentParser:
    parser = _Parser(prog=command.name, add_help=False, allow_abbrev=False)
    for param in command.params:
        _add(parser, param)
    return parser


def run(argv: list[str]) -> int | None:
    """The exit code of the command when ARGV is a well-formed invocation; None: not handled, use typer."""
    from vllm_launcher.base import output

    command = BY_NAME.get(argv[0]) if argv else None
    if command is None or any(a in ("-h", "--help", "--") for a in argv):
        return None
    # pydantic looks up plugins through package metadata on first use (~15 ms); these commands need none.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        values = vars(parser_for(command).parse_args(argv[1:]))
    except _FallThrough:
        return None
    return output.emit(command.load()(**body_arguments(command.params, values)))
