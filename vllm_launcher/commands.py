"""Bodies of the read-only preset commands (`presets`, `show`, `render`).

Shared by the typer CLI and by the stdlib fast path (fastpath.py), so both print the same thing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vllm_launcher import output

if TYPE_CHECKING:
    from vllm_launcher.presets import Override

PLAN_FORMATS = ("shell", "json")
# Deployment formats, rendered by vllm_launcher.exporters (kept here as names: no import on the hot path).
EXPORT_FORMATS = ("docker", "compose", "k8s", "lws", "ray", "systemd")
RENDER_FORMATS = PLAN_FORMATS + EXPORT_FORMATS
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


def render(ref: str, fmt: str, entrypoint: str, overrides: list[Override],
           export_values: dict[str, Any] | None = None, output_dir: str | None = None) -> None:
    """Print (or with output_dir, write) a preset rendered as a command or as deployment files."""
    if fmt in EXPORT_FORMATS:
        from vllm_launcher.exporters import as_text, write_files
        from vllm_launcher.exporters.cache import cached_render

        files = cached_render(ref, overrides, fmt, export_values or {})
        if output_dir:
            for path in write_files(files, output_dir):
                output.out(f"wrote {path}")
        else:
            output.out(as_text(files).rstrip("\n"))
        return
    from vllm_launcher.plan import format_json, format_shell
    from vllm_launcher.plan_cache import cached_plan

    plan = cached_plan(ref, overrides, entrypoint)
    text = format_json(plan) if fmt == "json" else format_shell(plan)
    if output_dir:
        from vllm_launcher.exporters import write_files

        name = "command.json" if fmt == "json" else "command.sh"
        for path in write_files({name: text + "\n"}, output_dir):
            output.out(f"wrote {path}")
    else:
        output.out(text)
