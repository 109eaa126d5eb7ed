"""`--format docker`: the seed guide's `docker run` as a script, `run.sh`."""

from __future__ import annotations

from vllm_launcher.exporters import common
from vllm_launcher.exporters.options import ExportOptions
from vllm_launcher.preset.schema import Preset


def publish(preset: Preset) -> str:
    """`-p` value: the preset's host address on the host side (127.0.0.1 by default, so the server is
    not exposed beyond this machine unless the preset says host: 0.0.0.0), the port on both sides."""
    port = preset.port
    if preset.host in ("0.0.0.0", "::", ""):
        return f"{port}:{port}"
    host = f"[{preset.host}]" if ":" in preset.host else preset.host
    return f"{host}:{port}:{port}"


def host_hf_cache(options: ExportOptions) -> str:
    return options.hf_cache_path or common.DEFAULT_HOST_HF_CACHE


def secret_exports(preset: Preset) -> list[str]:
    """Shell lines that put each secret in the variable vLLM reads, from the user's variable, failing
    early when a required one is unset. Values stay in the environment (`-e NAME`), never in argv."""
    lines = []
    for secret in common.secrets(preset):
        if secret.required:
            lines.append(common.shell_require(secret.source,
                                              f"set {secret.source} to the API key clients must send"))
            if secret.source != secret.var:
                lines.append(f'export {secret.var}="${secret.source}"')
        elif secret.source != secret.var:
            lines.append(f'export {secret.var}="${{{secret.source}:-}}"')
    return lines


def render(preset: Preset, options: ExportOptions) -> dict[str, str]:
    common.require_single_node(preset, "docker")
    name = common.app_name(preset, options)
    gpus = common.gpu_count(preset)
    words = ["docker", "run", "--rm", "--name", name]
    if preset.device == "cuda":
        # --ipc=host: PyTorch's workers share tensors through /dev/shm (vLLM's Docker docs).
        words += ["--gpus", str(gpus), "--ipc=host"]
    else:
        # vLLM's CPU image: SYS_NICE and an unconfined seccomp profile let it bind OpenMP threads to
        # cores and NUMA memory; no GPU options.
        words += ["--cap-add", "SYS_NICE", "--security-opt", "seccomp=unconfined",
                  f"--shm-size={common.shm_size_gib(preset, options, gpus)}g"]
    words += ["-p", publish(preset), "-v", f"{host_hf_cache(options)}:{common.HF_CACHE_IN_CONTAINER}"]
    for secret in common.secrets(preset):
        words += ["-e", secret.var]
    for key, value in common.container_env(preset).items():
        words += ["-e", f"{key}={value}"]
    words += [common.image(preset, options), *common.image_args(preset)]

    where = f"{gpus} GPU(s)" if preset.device == "cuda" else "the CPU"
    lines = [
        f"vllm-launch render {preset.name} --format docker: {common.shown(preset.model)} on {where}.",
        "vLLM listens on 0.0.0.0 inside the container (its own network namespace); -p decides who can",
        f"reach it: {publish(preset)}. Secrets pass by name (-e NAME): values come from this shell.",
    ]
    script = "#!/bin/sh\n" + common.header(lines) + "set -eu\n"
    exports = secret_exports(preset)
    if exports:
        script += "\n".join(exports) + "\n"
    script += "exec " + common.shell_command(words, head=2) + "\n"
    return {"run.sh": script}
