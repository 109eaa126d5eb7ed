"""The `vllm-launch` command line: parses options, calls one function, hands the result to `output`.

Heavy modules (torch, vllm, transformers, httpx, rich) are imported inside the commands that need them,
so `--help`, `render`, `show`, `presets`, `doctor` on presets and `status` stay fast.
"""

from __future__ import annotations

import functools
import inspect
import sys
from enum import Enum
from typing import Annotated, Any, Optional

import typer

try:  # typer >= 0.20 vendors click; older releases use the click package
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

from vllm_launcher import commands, output
from vllm_launcher.errors import EXIT_USAGE, LaunchError
from vllm_launcher.overrides import EXPORT_OPTIONS, OVERRIDE_OPTIONS, collect_overrides

app = typer.Typer(
    name="vllm-launch",
    help="Start and keep a vLLM server: presets, fit estimates, supervision and doctor checks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# ------------------------------------------------------------------------------- shared options

PresetArg = Annotated[str, typer.Argument(metavar="PRESET", help="Preset name or path to a preset YAML file.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]

def _option_params(table: list[tuple[str, str, type, str]], prefix: str, panel: str) -> list[inspect.Parameter]:
    return [inspect.Parameter(
        f"{prefix}{field}", inspect.Parameter.KEYWORD_ONLY, default=None,
        annotation=Annotated[Optional[kind], typer.Option(option, help=help_text,  # noqa: UP045
                                                          rich_help_panel=panel)],
    ) for option, field, kind, help_text in table]


def _with_options(func: Any, target: str, prefix: str, extra: list[inspect.Parameter],
                  collect: Any) -> Any:
    """Give `func` one typer option per extra parameter (all named PREFIX...); the command receives their
    values gathered by `collect({name without prefix: value})` as the keyword argument `target`."""
    signature = inspect.signature(func, eval_str=True)
    params = [p for p in signature.parameters.values() if p.name != target] + extra

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name[len(prefix):]: kwargs.pop(name) for name in list(kwargs) if name.startswith(prefix)}
        return func(*args, **{target: collect(values)}, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return wrapper


def with_overrides(func: Any) -> Any:
    """Add the override options to a command; the command receives them as `overrides: list[Override]`."""
    set_option = inspect.Parameter(
        "ov_set", inspect.Parameter.KEYWORD_ONLY, default=None,
        annotation=Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
            "--set", metavar="KEY=VALUE", help="Set any preset field (repeatable), e.g. --set max_num_seqs=8.",
            rich_help_panel="Overrides")],
    )
    extra = [*_option_params(OVERRIDE_OPTIONS, "ov_", "Overrides"), set_option]
    return _with_options(func, "overrides", "ov_", extra,
                         lambda values: collect_overrides({f"ov_{k}": v for k, v in values.items()}))


def with_export_options(func: Any) -> Any:
    """Add the deployment-format options (overrides.EXPORT_OPTIONS) to `render`; the command receives them
    as `export_values: dict` (field -> value, None for unset)."""
    return _with_options(func, "export_values", "ex_", _option_params(EXPORT_OPTIONS, "ex_", "Deployment formats"),
                         dict)


# ------------------------------------------------------------------------------------- commands


@app.command("presets")
def presets_command(as_json: JsonOpt = False) -> None:
    """List the presets: built-in, and your own from $XDG_CONFIG_HOME/vllm-launch/presets."""
    commands.presets(as_json)


@app.command("show")
@with_overrides
def show_command(preset: PresetArg, overrides: list | None = None) -> None:
    """Print the resolved preset as YAML (after `extends` and overrides)."""
    commands.show(preset, overrides or [])


RenderFormat = Enum("RenderFormat", {name: name for name in commands.RENDER_FORMATS}, type=str)
EntrypointChoice = Enum("EntrypointChoice", {name: name for name in commands.ENTRYPOINTS}, type=str)


@app.command("render")
@with_overrides
@with_export_options
def render_command(
    preset: PresetArg,
    fmt: Annotated[RenderFormat, typer.Option(
        "--format", "-f", help="shell/json: the vLLM command; docker, compose, k8s, systemd: one machine; "
        "lws, ray: multi-node presets.")] = "shell",  # type: ignore[assignment]
    entrypoint: Annotated[EntrypointChoice, typer.Option(
        "--entrypoint", help="api_server: python -m vllm.entrypoints.openai.api_server; serve: vllm serve.")
    ] = "api_server",  # type: ignore[assignment]
    output_dir: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--output", "-o", help="Write the files into this directory instead of printing them.")] = None,
    export_values: dict | None = None,
    overrides: list | None = None,
) -> None:
    """Print the exact vLLM command for a preset, or its deployment files (flag order: see README)."""
    commands.render(preset, RenderFormat(fmt).value, EntrypointChoice(entrypoint).value, overrides or [],
                    export_values or {}, output_dir)


# ------------------------------------------------------------------------------------ entry point


def main(argv: list[str] | None = None) -> None:
    """Run the typer CLI (entry.main tries the fast path first); every expected error becomes one line on stderr and an exit code, never a traceback."""
    args = sys.argv[1:] if argv is None else argv
    try:
        result = app(args=args, prog_name="vllm-launch", standalone_mode=False)
    except LaunchError as exc:
        output.error_line(str(exc))
        sys.exit(exc.exit_code)
    except click_exceptions.NoArgsIsHelpError as exc:
        output.out(exc.ctx.get_help() if exc.ctx else "")
        sys.exit(EXIT_USAGE)
    except click_exceptions.UsageError as exc:
        hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx else ""
        output.error_line(f"{exc.format_message()}{hint}")
        sys.exit(exc.exit_code)
    except click_exceptions.ClickException as exc:
        output.error_line(exc.format_message())
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        output.err("vllm-launch: interrupted")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(result if isinstance(result, int) else 0)


# Command groups that live in their own modules register themselves on `app` when imported.
from vllm_launcher import cli_doctor, cli_fit, cli_supervise  # noqa: F401
