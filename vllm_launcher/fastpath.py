"""A stdlib-only fast path for the hot read-only commands (`render`, `show`, `presets`).

Why: typer >= 0.26 (required by vLLM's own CLI deps) builds a pydantic TypeAdapter for every option on
each run, which alone costs more than the whole `render` budget. Well-formed invocations of these
commands are parsed here with argparse from the same option table as the typer CLI; anything else
(--help, a typo, a bad value) falls through to typer, which owns help and usage errors.
"""

from __future__ import annotations

import argparse
import os

from vllm_launcher import commands

HOT_COMMANDS = ("render", "show", "presets")


class _FallThrough(Exception):
    """The fast path does not handle this invocation; let typer parse it."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _FallThrough(message)

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise _FallThrough(message)


def _parser(command: str) -> _Parser:
    from vllm_launcher.overrides import EXPORT_OPTIONS, OVERRIDE_OPTIONS

    parser = _Parser(prog=command, add_help=False, allow_abbrev=False)
    if command == "presets":
        parser.add_argument("--json", dest="as_json", action="store_true")
        return parser
    parser.add_argument("preset")
    for option, field, kind, _help in OVERRIDE_OPTIONS:
        parser.add_argument(option, dest=f"ov_{field}", type=kind, default=None)
    parser.add_argument("--set", dest="ov_set", action="append", default=[])
    if command == "render":
        parser.add_argument("--format", "-f", dest="fmt", choices=commands.RENDER_FORMATS, default="shell")
        parser.add_argument("--entrypoint", choices=commands.ENTRYPOINTS, default="api_server")
        parser.add_argument("--output", "-o", dest="output_dir", default=None)
        for option, field, kind, _help in EXPORT_OPTIONS:
            parser.add_argument(option, dest=f"ex_{field}", type=kind, default=None)
    return parser


def run(argv: list[str]) -> bool:
    """Run a hot command if argv is a well-formed one; False means "not handled, use typer"."""
    if not argv or argv[0] not in HOT_COMMANDS or any(a in ("-h", "--help", "--") for a in argv):
        return False
    # pydantic looks up plugins through package metadata on first use (~15 ms); these commands need none.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        args = _parser(argv[0]).parse_args(argv[1:])
    except _FallThrough:
        return False
    if argv[0] == "presets":
        commands.presets(args.as_json)
        return True
    from vllm_launcher.overrides import collect_overrides

    overrides = collect_overrides({k: v for k, v in vars(args).items() if k.startswith("ov_")})
    if argv[0] == "show":
        commands.show(args.preset, overrides)
    else:
        export_values = {k[3:]: v for k, v in vars(args).items() if k.startswith("ex_")}
        commands.render(args.preset, args.fmt, args.entrypoint, overrides, export_values, args.output_dir)
    return True
