"""Bodies of the read-only preset commands (`presets`, `show`, `render`).

Shared by the typer CLI and by the stdlib fast path (fastpath.py), so both print the same thing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vllm_launcher import output

if TYPE_CHECKING:
    from vllm_launcher.presets import Override

RENDER_FORMATS = ("shell", "json")
ENTRYPOINTS = ("api_server", "serve")


def presets(as_json: bool) -> None:
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


def show(ref: str, overrides: list[Override]) -> None:
    from vllm_launcher.presets import preset_as_yaml, resolve

    resolved = resolve(ref, overrides)
    output.out(f"# {resolved.preset.name} ({resolved.origin}): {' <- '.join(resolved.chain)}")
    output.out(preset_as_yaml(resolved.preset).rstrip("\n"))


def render(ref: str, fmt: str, entrypoint: str, overrides: list[Override]) -> None:
    from vllm_launcher.plan import format_json, format_shell
    from vllm_launcher.plan_cache import cached_plan

    plan = cached_plan(ref, overrides, entrypoint)
    output.out(format_json(plan) if fmt == "json" else format_shell(plan))
