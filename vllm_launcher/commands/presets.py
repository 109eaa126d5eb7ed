"""`presets`, `show`, `render`: the read-only preset commands (the hot path: `render` and friends run on
the CLI's stdlib fast path, and a repeated render comes from the stat cache without YAML or pydantic)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from vllm_launcher.base import stat_cache
from vllm_launcher.base.errors import ConfigError
from vllm_launcher.base.output import Result, table

if TYPE_CHECKING:
    from vllm_launcher.preset.plan import LaunchPlan
    from vllm_launcher.preset.schema import Override

PLAN_FORMATS = ("shell", "json")
# Deployment formats: the exporter registry's names, kept as a tuple here so that the hot path need not
# import the registry (tests check that both agree).
EXPORT_FORMATS = ("docker", "compose", "k8s", "lws", "ray", "systemd")
RENDER_FORMATS = PLAN_FORMATS + EXPORT_FORMATS
ENTRYPOINTS = ("api_server", "serve", "auto")
# Where models.load_arch finds a model's config (a render's weight-based sizing depends on it).
_HF_ENV = ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")


def presets(as_json: bool = False) -> Result:
    """Every preset, built-in and the user's; a broken one is listed with its error."""
    from vllm_launcher.preset.schema import list_presets

    entries = list_presets()
    data = [{"name": e.name, "origin": e.origin, "source": e.source, "error": e.error,
             **({"model": e.preset.model, "device": e.preset.device, "max_model_len": e.preset.max_model_len,
                 "tensor_parallel_size": e.preset.tensor_parallel_size or 1} if e.preset else {})}
            for e in entries]
    rows: list[list[object]] = []
    for e in entries:
        if e.preset is None:
            rows.append([e.name, "(invalid, see below)", "", "", "", e.origin])
            continue
        p = e.preset
        rows.append([e.name, p.model, p.device, p.max_model_len or "model max", p.tensor_parallel_size or 1,
                     e.origin if e.origin == "builtin" else f"{e.origin}: {e.source}"])
    text = table(["NAME", "MODEL", "DEVICE", "CONTEXT", "TP", "FROM"], rows)
    return Result(text=text, data=data, as_json=as_json, errors=[] if as_json else [e.error for e in entries
                                                                                  if e.error])


def show(preset: str, overrides: list[Override] | None = None) -> Result:
    """The resolved preset as YAML, after a comment naming the files it came from."""
    from vllm_launcher.preset.schema import preset_as_yaml, resolve

    resolved = resolve(preset, overrides or [])
    head = f"# {resolved.preset.name} ({resolved.origin}): {' <- '.join(resolved.chain)}"
    return Result(text=head + "\n" + preset_as_yaml(resolved.preset).rstrip("\n"))


def render(preset: str, fmt: str = "shell", entrypoint: str = "api_server", output_dir: str | None = None,
           export_values: dict[str, Any] | None = None, overrides: list[Override] | None = None,
           vllm_version: str | None = None) -> Result:
    """A preset rendered as a command (shell, json) or as deployment files, printed or (OUTPUT_DIR)
    written; with VLLM_VERSION, its flags checked against that release first."""
    overrides = overrides or []
    notes: list[str] = []
    if entrypoint == "auto":
        entrypoint = _auto_entrypoint(preset, overrides)
    if vllm_version is not None:
        notes = _check_release(cached_plan(preset, overrides, entrypoint).argv, vllm_version)
    result = _render(preset, fmt, entrypoint, output_dir, export_values, overrides)
    result.notes[:0] = notes
    return result


def _auto_entrypoint(preset: str, overrides: list[Override]) -> str:
    """The form the preset's vLLM prefers (package metadata of its interpreter, no import)."""
    from vllm_launcher.machine import system
    from vllm_launcher.preset import flagtable
    from vllm_launcher.preset.schema import resolve

    resolved = resolve(preset, overrides).preset
    info = system.vllm_info(resolved.python)
    return flagtable.preferred_entrypoint(info.distribution, info.version)


def _check_release(argv: list[str], version: str) -> list[str]:
    """Warnings for deprecated flags; ConfigError (exit 2) for flags the release lacks."""
    from vllm_launcher.preset import flagtable

    flagtable.target_release(version)
    verdicts = flagtable.check_argv(argv, version)
    absent = [v.message for v in verdicts if v.status == "absent"]
    if absent:
        raise ConfigError(f"not for vLLM {version}: {'; '.join(absent)}", field="--vllm-version")
    return [f"vllm-launch: warning: {v.message}" for v in verdicts]


def _render(preset: str, fmt: str, entrypoint: str, output_dir: str | None,
            export_values: dict[str, Any] | None, overrides: list[Override]) -> Result:
    if fmt in EXPORT_FORMATS:
        from vllm_launcher.exporters import as_text

        files = rendered_files(preset, overrides, fmt, export_values or {})
        if not output_dir:
            return Result(text=as_text(files).rstrip("\n"))
    else:
        from vllm_launcher.preset.plan import format_json, format_shell

        plan = cached_plan(preset, overrides, entrypoint)
        text = format_json(plan) if fmt == "json" else format_shell(plan)
        if not output_dir:
            return Result(text=text)
        files = {"command.json" if fmt == "json" else "command.sh": text + "\n"}
    from vllm_launcher.exporters import write_files

    return Result(text="\n".join(f"wrote {path}" for path in write_files(files, output_dir)))


# ------------------------------------------------------------------------------------------- caches


def cached_plan(ref: str, overrides: list[Override], entrypoint: str) -> LaunchPlan:
    """The plan for a preset reference and overrides, validated in full on a cache miss (ConfigError)."""
    from vllm_launcher.preset.plan import LaunchPlan

    def build() -> tuple[dict, list[str]]:
        from vllm_launcher.preset.plan import build_plan, plan_deps
        from vllm_launcher.preset.schema import resolve

        resolved = resolve(ref, overrides)
        plan = build_plan(resolved.preset, entrypoint)  # type: ignore[arg-type]
        value = {"argv": plan.argv, "env": plan.env, "secret_env": plan.secret_env}
        return value, [*stat_cache.preset_deps(ref, resolved), *plan_deps(resolved.preset)]

    return LaunchPlan(**stat_cache.cached("plans", [ref, overrides, entrypoint], build))


def model_deps(model: str) -> list[str]:
    """Where models.load_arch looks for a model's config: a local directory, or the HF cache dirs."""
    from vllm_launcher.memory.arch import hf_cache_dirs

    deps = [model] if model.startswith(("/", ".", "~")) else []
    for hub in hf_cache_dirs():
        deps += [str(hub), str(hub / ("models--" + model.replace("/", "--")))]
    return deps


def rendered_files(ref: str, overrides: list[Override], fmt: str,
                   option_values: dict[str, Any]) -> dict[str, str]:
    """{filename: text} of a preset in a deployment format with CLI option values (None: default); rendered in
    full on a cache miss (ConfigError for bad input)."""
    values = {k: v for k, v in option_values.items() if v is not None}

    def build() -> tuple[dict[str, str], list[str]]:
        from vllm_launcher.exporters.options import make_options
        from vllm_launcher.exporters.registry import render as render_format
        from vllm_launcher.preset.schema import resolve

        resolved = resolve(ref, overrides)
        files = render_format(fmt, resolved, make_options(**values))
        return files, [*stat_cache.preset_deps(ref, resolved), *model_deps(resolved.preset.model)]

    key = [ref, overrides, fmt, sorted(values.items()), [os.environ.get(k) for k in _HF_ENV]]
    return dict(stat_cache.cached("renders", key, build))
