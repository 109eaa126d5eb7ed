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

from vllm_launcher import output
from vllm_launcher.errors import EXIT_USAGE, LaunchError

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

# (option, preset field, type, help): the overrides every preset-taking command accepts.
OVERRIDE_OPTIONS: list[tuple[str, str, type, str]] = [
    ("--model", "model", str, "Model (HF id or local path)."),
    ("--host", "host", str, "Address to bind (default 127.0.0.1)."),
    ("--port", "port", int, "Port to serve on."),
    ("--max-model-len", "max_model_len", int, "Context length."),
    ("--max-num-batched-tokens", "max_num_batched_tokens", int, "Tokens per scheduler step."),
    ("--gpu-memory-utilization", "gpu_memory_utilization", float, "Fraction of GPU memory vLLM may use."),
    ("--tp", "tensor_parallel_size", int, "Tensor parallel size."),
    ("--dtype", "dtype", str, "Model dtype (auto, float16, bfloat16, float32, ...)."),
    ("--kv-cache", "kv_cache_space_gib", int, "KV cache space in whole GiB (CPU: VLLM_CPU_KVCACHE_SPACE)."),
]


def with_overrides(func: Any) -> Any:
    """Add the override options to a command; the command receives them as `overrides: list[Override]`."""
    signature = inspect.signature(func, eval_str=True)
    params = [p for p in signature.parameters.values() if p.name != "overrides"]
    for option, field, kind, help_text in OVERRIDE_OPTIONS:
        params.append(inspect.Parameter(
            f"ov_{field}", inspect.Parameter.KEYWORD_ONLY, default=None,
            annotation=Annotated[Optional[kind], typer.Option(option, help=help_text,  # noqa: UP045
                                                              rich_help_panel="Overrides")],
        ))
    params.append(inspect.Parameter(
        "ov_set", inspect.Parameter.KEYWORD_ONLY, default=None,
        annotation=Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
            "--set", metavar="KEY=VALUE", help="Set any preset field (repeatable), e.g. --set max_num_seqs=8.",
            rich_help_panel="Overrides")],
    ))

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from vllm_launcher.presets import parse_set

        overrides = []
        for option, field, _kind, _help in OVERRIDE_OPTIONS:
            value = kwargs.pop(f"ov_{field}")
            if value is not None:
                overrides.append((option, field, value))
        for item in kwargs.pop("ov_set") or []:
            overrides.append(parse_set(item))
        return func(*args, overrides=overrides, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return wrapper


# ------------------------------------------------------------------------------------- commands


@app.command("presets")
def presets_command(as_json: JsonOpt = False) -> None:
    """List the presets: built-in, and your own from $XDG_CONFIG_HOME/vllm-launch/presets."""
    from vllm_launcher.presets import list_presets

    entries = list_presets()
    if as_json:
        output.print_json([
            {"name": e.name, "origin": e.origin, "source": e.source, "error": e.error,
             **({"model": e.preset.model, "device": e.preset.device, "max_model_len": e.preset.max_model_len,
                 "tensor_parallel_size": e.preset.tensor_parallel_size or 1} if e.preset else {})}
            for e in entries
        ])
        return
    rows = []
    for e in entries:
        if e.preset is None:
            rows.append([e.name, "(invalid, see below)", "", "", "", e.origin])
            continue
        p = e.preset
        rows.append([e.name, p.model, p.device, p.max_model_len or "model max", p.tensor_parallel_size or 1,
                     e.origin if e.origin == "builtin" else f"{e.origin}: {e.source}"])
    output.out(output.table(["NAME", "MODEL", "DEVICE", "CONTEXT", "TP", "FROM"], rows))
    for e in entries:
        if e.error:
            output.error_line(e.error)


@app.command("show")
@with_overrides
def show_command(preset: PresetArg, overrides: list | None = None) -> None:
    """Print the resolved preset as YAML (after `extends` and overrides)."""
    from vllm_launcher.presets import preset_as_yaml, resolve

    resolved = resolve(preset, overrides)
    chain = " <- ".join(resolved.chain)
    output.out(f"# {resolved.preset.name} ({resolved.origin}): {chain}")
    output.out(preset_as_yaml(resolved.preset).rstrip("\n"))


class RenderFormat(str, Enum):
    shell = "shell"
    json = "json"


class EntrypointChoice(str, Enum):
    api_server = "api_server"
    serve = "serve"


@app.command("render")
@with_overrides
def render_command(
    preset: PresetArg,
    fmt: Annotated[RenderFormat, typer.Option("--format", "-f", help="Output format.")] = RenderFormat.shell,
    entrypoint: Annotated[EntrypointChoice, typer.Option(
        "--entrypoint", help="api_server: python -m vllm.entrypoints.openai.api_server; serve: vllm serve.")
    ] = EntrypointChoice.api_server,
    overrides: list | None = None,
) -> None:
    """Print the exact vLLM command for a preset."""
    from vllm_launcher.plan import build_plan, format_json, format_shell
    from vllm_launcher.presets import resolve

    plan = build_plan(resolve(preset, overrides).preset, entrypoint.value)
    output.out(format_json(plan) if fmt is RenderFormat.json else format_shell(plan))


# ------------------------------------------------------------------------------------ entry point


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every expected error becomes one line on stderr and an exit code, never a traceback."""
    try:
        result = app(args=argv, prog_name="vllm-launch", standalone_mode=False)
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
from vllm_launcher import cli_doctor, cli_fit, cli_supervise  # noqa: E402,F401
