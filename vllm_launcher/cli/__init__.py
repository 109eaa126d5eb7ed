"""The `vllm-launch` command line: the stdlib fast path when well-formed, else the typer app.

Both are built from one command table (cli.table) and one option table (cli.options); command bodies
live in vllm_launcher.commands and return results that vllm_launcher.base.output prints. This module stays
light: importing typer alone costs about half of `render`'s time budget.
"""

from __future__ import annotations

import sys

from vllm_launcher.base.errors import LaunchError


def main(argv: list[str] | None = None) -> None:
    """Run one command and exit with its code; an expected error is one line on stderr, never a traceback."""
    args = sys.argv[1:] if argv is None else list(argv)
    sys.exit(run(args))


def run(args: list[str]) -> int:
    from vllm_launcher.base import output

    try:
        if args == ["--version"]:
            from vllm_launcher import __version__

            output.out(f"vllm-launch {__version__}")
            return 0
        from vllm_launcher.cli import fastpath

        code = fastpath.run(args)
        if code is None:
            from vllm_launcher.cli.app import main as typer_main

            code = typer_main(args)
        return code
    except LaunchError as exc:
        output.error_line(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        output.err("vllm-launch: interrupted")
        return 130
    except BrokenPipeError:
        return 0
