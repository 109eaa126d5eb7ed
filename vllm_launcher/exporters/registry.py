"""The registry: format name -> exporter, and `render()` with a preset's file named in its errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from vllm_launcher.base.errors import ConfigError
from vllm_launcher.demo import DEMO_MODEL_ID
from vllm_launcher.exporters import compose, docker, k8s, lws, ray, systemd

if TYPE_CHECKING:
    from vllm_launcher.exporters.options import ExportOptions
    from vllm_launcher.preset.schema import Preset, ResolvedPreset

Exporter = Callable[["Preset", "ExportOptions"], dict[str, str]]

EXPORTERS: dict[str, Exporter] = {
    "docker": docker.render,
    "compose": compose.render,
    "k8s": k8s.render,
    "lws": lws.render,
    "ray": ray.render,
    "systemd": systemd.render,
}
FORMATS: tuple[str, ...] = tuple(EXPORTERS)
MULTI_NODE_FORMATS = ("lws", "ray")
SINGLE_NODE_FORMATS = ("docker", "compose", "k8s", "systemd")


def applicable_formats(preset: Preset) -> tuple[str, ...]:
    """The formats a preset renders in: lws/ray for multi-node presets, the others for single-node; the
    demo model only runs where it was built (systemd on this machine)."""
    if preset.model == DEMO_MODEL_ID:
        return ("systemd",)
    return MULTI_NODE_FORMATS if preset.nodes > 1 else SINGLE_NODE_FORMATS


def render(fmt: str, preset: Preset | ResolvedPreset, options: ExportOptions | None = None) -> dict[str, str]:
    """Render a preset (or a resolved one, whose file then names errors) in one format.
    Returns {filename: text} in order. Raises ConfigError (unknown format, preset not applicable)."""
    from vllm_launcher.exporters.options import ExportOptions
    from vllm_launcher.preset.schema import ResolvedPreset

    if fmt not in EXPORTERS:
        raise ConfigError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}", source="--format")
    source = preset.source if isinstance(preset, ResolvedPreset) else None
    plain = preset.preset if isinstance(preset, ResolvedPreset) else preset
    if plain.model == DEMO_MODEL_ID and fmt not in applicable_formats(plain):
        raise ConfigError(
            f"--format {fmt}: the demo model ({DEMO_MODEL_ID}) is built on this machine by `vllm-launch up "
            "demo`, so a container or another machine cannot load it; use --format systemd here, or give "
            "--model an HF id (or a path the container mounts)", source=source, field="model")
    try:
        return EXPORTERS[fmt](plain, options or ExportOptions())
    except ConfigError as exc:
        if exc.source is None and source is not None:
            raise ConfigError(exc.message, source=source, field=exc.field) from None
        raise


