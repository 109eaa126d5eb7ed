"""`vllm-launch up`, `status`, `logs`, `down` (registered on the app from cli.py).

Only option parsing here; the bodies live in `supervise.commands` (no typer, no heavy imports).
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from vllm_launcher.cli import JsonOpt, PresetArg, app, with_overrides

NameOpt = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--name", help="Server name (default: the preset's name); several servers can run side by side.")]


@app.command("up")
@with_overrides
def up_command(
    preset: PresetArg,
    name: NameOpt = None,
    detach: Annotated[bool, typer.Option(
        "--detach", "-d", help="Return once ready, leaving a background supervisor that owns the server.")
    ] = False,
    timeout: Annotated[Optional[float], typer.Option(  # noqa: UP045
        "--timeout", metavar="S", help="Give up when not ready after S seconds (default: no overall limit; "
        "a stall timeout sized from past starts still applies).")] = None,
    restart: Annotated[str, typer.Option(
        "--restart", metavar="on-failure|always|never",
        help="Restart after ready when vLLM exits or /health fails (exponential back-off, gives up).")
    ] = "on-failure",
    gpus: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--gpus", metavar="0,1", help="GPUs to use (CUDA_VISIBLE_DEVICES), distinct indices; starts sharing a GPU are serialized.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Start even when the pre-flight checks refuse.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the command and the pre-flight results; start nothing.")] = False,
    hardware: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--hardware", metavar="FILE", help="Check the fit against a saved probe (`vllm-launch probe --json`) instead of this machine: "
        "for --dry-run and for a real start's pre-flight alike.")] = None,
    overrides: list | None = None,
) -> int:
    """Start a vLLM server from a preset, show it becoming ready, keep it alive (Ctrl-C stops it)."""
    from vllm_launcher.supervise.commands import up_main

    return up_main(preset, overrides, name=name, detach=detach, timeout_s=timeout, restart=restart, gpus=gpus,
                   force=force, dry_run=dry_run, hardware_file=hardware)


@app.command("status")
def status_command(
    name: Annotated[Optional[str], typer.Argument(metavar="[NAME]", help="One server (default: all).")] = None,  # noqa: UP045
    as_json: JsonOpt = False,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh every 2 s until Ctrl-C.")] = False,
) -> int:
    """Show the servers: state, endpoint, pid, uptime, restarts, memory, requests and KV-cache usage."""
    from vllm_launcher.supervise.commands import status_main

    return status_main(name, as_json=as_json, watch=watch)


@app.command("logs")
def logs_command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Server name.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")] = False,
    lines: Annotated[int, typer.Option("-n", "--lines", metavar="N", help="Lines to show first (0 or more).")] = 50,
) -> int:
    """Print a server's vLLM log."""
    from vllm_launcher.supervise.commands import logs_main

    return logs_main(name, follow=follow, lines=lines)


@app.command("down")
def down_command(
    name: Annotated[Optional[str], typer.Argument(metavar="[NAME]", help="Server name.")] = None,  # noqa: UP045
    all_servers: Annotated[bool, typer.Option("--all", help="Stop every server.")] = False,
    timeout: Annotated[float, typer.Option(
        "--timeout", metavar="S", help="Seconds for a clean stop before SIGKILL.")] = 30.0,
) -> int:
    """Stop a server and its whole process tree; confirm nothing is left and the port is free."""
    from vllm_launcher.supervise.commands import down_main

    return down_main(name, all_servers=all_servers, timeout_s=timeout)
