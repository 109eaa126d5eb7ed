"""`--format compose`: one Compose service with the docker command's content, a /health healthcheck and a
GPU device reservation, as `compose.yaml`."""

from __future__ import annotations

from typing import Any

from vllm_launcher.exporters import common
from vllm_launcher.exporters.docker import host_hf_cache, publish
from vllm_launcher.exporters.options import ExportOptions
from vllm_launcher.preset.schema import Preset


def _literal(value: str) -> str:
    return value.replace("$", "$$")  # Compose interpolates ${...} everywhere; $$ is a literal $


def environment(preset: Preset) -> dict[str, str | None]:
    """Compose's environment mapping. A null value passes the variable through from the shell running
    `docker compose` (by name, never written here); a renamed secret becomes ${SOURCE}."""
    env: dict[str, str | None] = {}
    for secret in common.secrets(preset):
        if secret.source == secret.var:
            env[secret.var] = None
        elif secret.required:
            env[secret.var] = f"${{{secret.source}:?set {secret.source} to the API key clients must send}}"
        else:
            env[secret.var] = f"${{{secret.source}:-}}"
    for key, value in common.container_env(preset).items():
        env[key] = _literal(value)
    return env


def render(preset: Preset, options: ExportOptions) -> dict[str, str]:
    common.require_single_node(preset, "compose")
    name = common.app_name(preset, options)
    gpus = common.gpu_count(preset)
    size = common.sizing(preset, options)
    # python3 is in every vLLM image; curl is not guaranteed. /health is never behind the API key.
    probe = (f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{preset.port}/health', "
             "timeout=5)")
    service: dict[str, Any] = {
        "image": common.image(preset, options),
        "command": [_literal(arg) for arg in common.image_args(preset)],
        "ports": [publish(preset)],
        "volumes": [_literal(f"{host_hf_cache(options)}:{common.HF_CACHE_IN_CONTAINER}")],
        "environment": environment(preset),
    }
    if preset.device == "cuda":
        service["ipc"] = "host"
    else:
        service["cap_add"] = ["SYS_NICE"]
        service["security_opt"] = ["seccomp=unconfined"]
        service["shm_size"] = f"{common.shm_size_gib(preset, options, gpus)}g"
    service["healthcheck"] = {
        "test": ["CMD", "python3", "-c", probe],
        "interval": "30s",
        "timeout": "10s",
        "retries": 3,
        # Failures while the model loads do not count: the start-up budget is derived from its size.
        "start_period": f"{size.startup_s}s",
    }
    service["restart"] = "on-failure"
    if preset.device == "cuda":
        service["deploy"] = {"resources": {"reservations": {"devices": [
            {"driver": "nvidia", "count": gpus, "capabilities": ["gpu"]}]}}}
    lines = [
        f"vllm-launch render {preset.name} --format compose: {common.shown(preset.model)}"
        + (f" on {gpus} GPU(s)." if preset.device == "cuda" else " on the CPU."),
        "vLLM listens on 0.0.0.0 inside the container (its own network namespace); `ports` decides who can",
        (f"reach it. Start-up budget {size.startup_s} s ({size.weights_source}: "
        f"{common.fmt_gib(size.weights_gib)}). Secrets pass by name from the shell running compose."),
    ]
    return {"compose.yaml": common.header(lines) + common.dump_yaml({"services": {name: service}})}
