"""The `vllm-launch` entry point: the stdlib fast path for hot commands, else the full typer CLI.

This module must stay light: importing typer alone costs about half of `render`'s time budget.
"""

from __future__ import annotations

import sys

from vllm_launcher.errors import LaunchError


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        from vllm_launcher import fastpath

        handled = fastpath.run(args)
    except LaunchError as exc:
        from vllm_launcher.output import error_line

        error_line(str(exc))
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(0)
    if handled:
        sys.exit(0)
    from vllm_launcher.cli import main as typer_main

    typer_main(args)
