"""The typer app, built from the command table: every command is registered the same way, its signature
and help generated from its `Param`s (cli.options), its body called with the parsed values and its result
printed by `output.emit`. Typer owns help, usage errors and every invocation the fast path declines.
"""

from __future__ import annotations

import enum
import inspect
import sys
from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer

try:  # typer >= 0.20 vendors click; older releases use the click package
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

from vllm_launcher import __version__
from vllm_launcher.base import output
from vllm_launcher.base.errors import EXIT_USAGE
from vllm_launcher.cli.options import Param, body_arguments
from vllm_launcher.cli.table import COMMANDS, Command

app = typer.Typer(
    name="vllm-launch",
    help="Start and keep a vLLM server: presets, fit estimates, supervision and doctor checks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        output.out(f"vllm-launch {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: Annotated[Optional[bool], typer.Option(  # noqa: UP045
        "--version", help="Print the version and exit.", callback=_version, is_eager=True)] = None) -> None:
    """Start and keep a vLLM server: presets, fit estimates, supervision and doctor checks."""


def _choices(param: Param) -> Any:
    """An Enum of PARAM's choices (typer shows and checks them; the body gets the plain value)."""
    return enum.Enum(f"{param.dest.title()}Choice", {c: c for c in param.choices or ()}, type=str)


def _annotation(param: Param) -> Any:
    """The typed, annotated parameter typer reads: Argument or Option, with choices as an Enum."""
    kind: Any = param.kind
    if param.choices:
        kind = _choices(param)
    if param.many:
        kind = list.__class_getitem__(kind)
    if param.is_argument:
        info = typer.Argument(metavar=param.metavar, help=param.help, show_default=False)
    else:
        info = typer.Option(*param.flags, help=param.help, metavar=param.metavar, rich_help_panel=param.panel,
                            show_default=param.default not in (None, False), hidden=param.hidden)
    optional = param.kind is not bool and (param.default is None or param.many)
    return Annotated[Optional[kind] if optional else kind, info]  # noqa: UP045


def _signature(command: Command) -> inspect.Signature:
    arguments = [p for p in command.params if p.is_argument]
    options = [p for p in command.params if not p.is_argument]
    parameters = []
    for param in [*arguments, *options]:
        default = inspect.Parameter.empty if param.is_argument and param.required else param.default
        parameters.append(inspect.Parameter(param.dest,
                                            inspect.Parameter.POSITIONAL_OR_KEYWORD if param.is_argument
                                            else inspect.Parameter.KEYWORD_ONLY, default=default,
                                            annotation=_annotation(param)))
    return inspect.Signature(parameters)


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def _typer_command(command: Command) -> Callable[..., int]:
    def run(**values: Any) -> int:
        values = {name: _plain(value) for name, value in values.items()}
        return output.emit(command.load()(**body_arguments(command.params, values)))

    run.__name__ = command.name
    run.__doc__ = command.help
    run.__signature__ = _signature(command)  # type: ignore[attr-defined]
    return run


for _command in COMMANDS:
    # The full description as the list's entry: click would cut it at the terminal's width with "...".
    app.command(_command.name, short_help=_command.help)(_typer_command(_command))


def main(argv: list[str]) -> int:
    """Run the typer CLI; every expected error becomes one line on stderr and an exit code."""
    if argv[:1] == ["launch"] and "--" in argv:  # what follows `--` is the client's, untouched by click
        argv = [*argv[:argv.index("--")], *(f"--client-arg={arg}" for arg in argv[argv.index("--") + 1:])]
    try:
        result = app(args=argv, prog_name="vllm-launch", standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError as exc:
        output.out(exc.ctx.get_help() if exc.ctx else "")
        return EXIT_USAGE
    except click_exceptions.UsageError as exc:
        hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx else ""
        output.error_line(f"{exc.format_message()}{hint}")
        return exc.exit_code
    except click_exceptions.ClickException as exc:
        output.error_line(exc.format_message())
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        output.err("vllm-launch: interrupted")
        return 130
    return result if isinstance(result, int) else 0


def help_text(command: str | None = None, width: int = 100) -> str:
    """The real `--help` of the app or one command, as the terminal shows it at WIDTH columns
    (docs/cli.md)."""
    import io
    import os
    from contextlib import redirect_stdout

    buffer = io.StringIO()
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        with redirect_stdout(buffer):
            main([command, "--help"] if command else ["--help"])
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    return buffer.getvalue()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
