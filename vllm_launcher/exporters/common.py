"""What every exporter shares: layout checks, names, images, sizing, secrets, quoting, YAML.

Pure functions of a `Preset` and `ExportOptions`. Sizing asks the model catalog (models.load_arch and
estimate.weights_bytes, both offline) for the weights; an unknown model falls back to documented defaults.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from typing import Any

from vllm_launcher.base.errors import ConfigError, LaunchError
from vllm_launcher.base.safe_text import LINE_BREAKS, assert_single_line, comment_safe
from vllm_launcher.base.units import GIB
from vllm_launcher.exporters.options import ExportOptions
from vllm_launcher.preset.plan import build_plan, plan_env, plan_secret_env, vllm_flags
from vllm_launcher.preset.schema import Preset

HF_CACHE_IN_CONTAINER = "/root/.cache/huggingface"  # vLLM's images run as root (vLLM's Docker docs)
DEFAULT_HOST_HF_CACHE = "~/.cache/huggingface"
# vLLM's CPU backend without VLLM_CPU_KVCACHE_SPACE sizes the KV cache from a fraction of the NUMA node's
# memory, which inside a memory-limited container can exceed the limit: containers get 4 GiB (vLLM's
# old default) unless the preset sets kv_cache_space_gib.
DEFAULT_CPU_KV_CACHE_GIB = 4

# Start-up budget: engine start, profiling and CUDA graphs take minutes on their own, and downloading and
# loading weights grows with their size. 600 s + 20 s per GiB covers a first download at ~50 MB/s; an
# unknown model gets 30 minutes (vLLM's systemd example uses TimeoutStartSec=30min).
STARTUP_BASE_S = 600
STARTUP_PER_WEIGHT_GIB_S = 20
DEFAULT_STARTUP_S = 1800
# Host memory: weights pass through page cache while loading, plus the Python/CUDA runtime per pod.
GPU_RUNTIME_MEMORY_GIB = 8
CPU_RUNTIME_MEMORY_GIB = 4
DEFAULT_GPU_MEMORY_GIB = 16


# ------------------------------------------------------------------------------------------ layout


def gpu_count(preset: Preset) -> int:
    """GPUs one vLLM instance uses: DP × TP × PP (whole GPUs; vLLM cannot use a fraction)."""
    return preset.gpus_needed


def require_single_node(preset: Preset, fmt: str) -> None:
    """Single-machine formats refuse presets that span nodes. Raises ConfigError."""
    if preset.nodes > 1:
        raise ConfigError(
            f"preset {preset.name!r} spans {preset.nodes} nodes but --format {fmt} describes one machine; "
            "use --format lws (Kubernetes LeaderWorkerSet) or --format ray (bare machines)", field="nodes")
    if preset.device == "cuda" and preset.gpus_per_node and gpu_count(preset) > preset.gpus_per_node:
        raise ConfigError(
            f"data_parallel_size × tensor_parallel_size × pipeline_parallel_size = {gpu_count(preset)} GPUs, "
            f"more than "
            f"gpus_per_node ({preset.gpus_per_node}) on the one node; lower TP/PP or set nodes",
            field="gpus_per_node")


def multinode_layout(preset: Preset, fmt: str) -> tuple[int, int]:
    """(nodes, GPUs per node) of a multi-node preset; TP × PP must equal nodes × gpus_per_node.
    Raises ConfigError for single-node or CPU presets and inconsistent layouts."""
    if preset.nodes < 2:
        raise ConfigError(
            f"--format {fmt} renders a multi-node deployment and preset {preset.name!r} runs on one machine "
            "(nodes: 1); use --format k8s, docker, compose or systemd, or set nodes and gpus_per_node",
            field="nodes")
    if preset.device != "cuda":
        raise ConfigError(f"--format {fmt} needs GPUs (device: cuda); vLLM's CPU backend runs on one machine",
                          field="device")
    if (preset.data_parallel_size or 1) > 1:
        raise ConfigError(
            f"--format {fmt} spreads one TP × PP engine over the nodes; data_parallel_size "
            f"{preset.data_parallel_size} across nodes needs vLLM's own DP launch (--data-parallel-address, "
            "one command per node): set data_parallel_size: 1 here, or use --replicas for more copies",
            field="data_parallel_size")
    tp, pp, world = preset.tensor_parallel_size or 1, preset.pipeline_parallel_size or 1, gpu_count(preset)
    per_node = preset.gpus_per_node
    if per_node is None:
        if world % preset.nodes:
            raise ConfigError(
                f"tensor_parallel_size × pipeline_parallel_size = {tp} × {pp} = {world} GPUs do not split "
                f"evenly over {preset.nodes} nodes; set gpus_per_node so that TP × PP = nodes × "
                "gpus_per_node",
                field="gpus_per_node")
        per_node = world // preset.nodes
    elif world != preset.nodes * per_node:
        raise ConfigError(
            f"tensor_parallel_size × pipeline_parallel_size = {tp} × {pp} = {world} must equal "
            f"nodes × gpus_per_node = {preset.nodes} × {per_node} = {preset.nodes * per_node} "
            f"(vLLM's usual layout: TP = GPUs per node, PP = nodes)", field="gpus_per_node")
    return preset.nodes, per_node


# ------------------------------------------------------------------------------------ names, image


def app_name(preset: Preset, options: ExportOptions) -> str:
    """The Kubernetes/Compose name: --name, else the preset's name as a DNS label. Never `vllm`: a
    Service named vllm makes Kubernetes inject VLLM_PORT=tcp://..., which vLLM reads as its own setting."""
    if options.name:
        if options.name == "vllm":
            raise ConfigError("`vllm` would make Kubernetes inject VLLM_PORT=tcp://... into pods, which "
                              "breaks vLLM's start-up; choose another name", source="--name")
        return options.name
    base = re.sub(r"[^a-z0-9-]+", "-", preset.name.lower()).strip("-")
    if not base or not base[0].isalpha():
        base = f"vllm-{base}".rstrip("-")
    if base == "vllm":
        base = "vllm-server"
    return base[:40].rstrip("-")


def image(preset: Preset, options: ExportOptions) -> str:
    """vLLM's image: vllm/vllm-openai:TAG (GPU), vllm/vllm-openai-cpu:TAG-ARCH (CPU), or --image."""
    if options.image:
        return options.image
    if preset.device == "cpu":
        return f"vllm/vllm-openai-cpu:{options.image_tag}-{options.cpu_arch}"
    return f"vllm/vllm-openai:{options.image_tag}"


# ------------------------------------------------------------------------------------------ vLLM args


def container_preset(preset: Preset) -> Preset:
    """The preset as run inside a container: listening on 0.0.0.0. A container has its own network
    namespace, so 127.0.0.1 there is unreachable from the host's port mapping and from the Service; who
    may connect is decided by the port mapping (docker -p) or the Service, not by vLLM's bind address."""
    return preset.model_copy(update={"host": "0.0.0.0"})


def serve_argv(preset: Preset) -> list[str]:
    """`vllm serve MODEL FLAGS...` for a container (host 0.0.0.0)."""
    return build_plan(container_preset(preset), "serve").argv


def image_args(preset: Preset) -> list[str]:
    """Arguments after the image name (the images' entrypoint is `vllm serve`): `--model M FLAGS...`,
    as in the seed guide's docker commands."""
    return ["--model", preset.model, *vllm_flags(container_preset(preset))]


def container_env(preset: Preset) -> dict[str, str]:
    """Plain (non-secret) env for a container: the preset's, and VLLM_CPU_KVCACHE_SPACE on CPU."""
    env = plan_env(preset)
    if preset.device == "cpu" and "VLLM_CPU_KVCACHE_SPACE" not in env:
        env = {"VLLM_CPU_KVCACHE_SPACE": str(DEFAULT_CPU_KV_CACHE_GIB), **env}
    return env


@dataclass(frozen=True)
class Secret:
    """A secret vLLM reads (`var`), taken from the user's variable `source`. Values never appear."""

    var: str
    source: str
    required: bool


def secrets(preset: Preset) -> list[Secret]:
    """VLLM_API_KEY when the preset has api_key_env (required: never start an unprotected server by
    accident); HF_TOKEN always, optional (gated models need it, others do not)."""
    found = []
    if preset.api_key_env:
        found.append(Secret("VLLM_API_KEY", preset.api_key_env, True))
    found.append(Secret("HF_TOKEN", preset.hf_token_env or "HF_TOKEN", False))
    # The preset's env entries that look like secrets: passed on from the user's variable, never written.
    found += [Secret(var, source, False) for var, source in plan_secret_env(preset).items()
              if var not in ("VLLM_API_KEY", "HF_TOKEN")]
    return found


# --------------------------------------------------------------------------------------------- sizing


@dataclass(frozen=True)
class Sizing:
    weights_gib: float | None  # the whole model's weights; None: unknown
    weights_source: str
    startup_s: int


def model_weights_gib(preset: Preset) -> tuple[float | None, str]:
    """(weights GiB of the whole model, where the number came from); (None, why) when unknown.
    Offline only: models.load_arch reads local directories, the HF cache and the built-in catalog."""
    from vllm_launcher.memory import arch as models
    from vllm_launcher.memory import estimate

    try:
        arch = models.load_arch(preset.model)
    except LaunchError:
        return None, "model size unknown"
    dtype = estimate.resolve_model_dtype(preset.dtype, arch)
    quantized = f", {preset.quantization}" if preset.quantization else ""
    return estimate.weights_bytes(arch, dtype, 1, 1, preset.quantization) / GIB, f"{dtype} weights{quantized}"


def sizing(preset: Preset, options: ExportOptions) -> Sizing:
    """Weights and the start-up budget (seconds, a whole number of minutes)."""
    weights: float | None
    if options.weights_gib is not None:
        weights, source = options.weights_gib, "weights from --weights-gib"
    else:
        weights, source = model_weights_gib(preset)
    if options.startup_timeout_s is not None:
        startup = options.startup_timeout_s
    elif weights is None:
        startup = DEFAULT_STARTUP_S
    else:
        startup = 60 * math.ceil((STARTUP_BASE_S + STARTUP_PER_WEIGHT_GIB_S * weights) / 60)
    return Sizing(weights, source, startup)


def memory_request_gib(preset: Preset, size: Sizing, nodes: int = 1) -> tuple[int, str]:
    """(host memory to request per pod in GiB, how it was computed)."""
    if preset.device == "cpu":
        kv = preset.kv_cache_space_gib or DEFAULT_CPU_KV_CACHE_GIB
        if size.weights_gib is None:
            extra = 2 * CPU_RUNTIME_MEMORY_GIB
            return kv + extra, f"KV {kv} GiB + {extra} GiB (model size unknown)"
        weights = math.ceil(size.weights_gib)
        return (weights + kv + CPU_RUNTIME_MEMORY_GIB,
                f"weights {weights} GiB + KV {kv} GiB + runtime {CPU_RUNTIME_MEMORY_GIB} GiB")
    if size.weights_gib is None:
        return DEFAULT_GPU_MEMORY_GIB, "default (model size unknown)"
    weights = math.ceil(size.weights_gib / nodes)
    share = "weights" if nodes == 1 else f"this node's 1/{nodes} of the weights"
    return weights + GPU_RUNTIME_MEMORY_GIB, f"{share} {weights} GiB + runtime {GPU_RUNTIME_MEMORY_GIB} GiB"


def shm_size_gib(preset: Preset, options: ExportOptions, gpus: int) -> int:
    """/dev/shm size: 2 GiB per GPU (tensor-parallel workers exchange data through it), 4 GiB on CPU
    (vLLM's CPU docker example uses --shm-size=4g)."""
    if options.shm_size_gib:
        return options.shm_size_gib
    return 4 if preset.device == "cpu" else max(2, 2 * gpus)


def fmt_gib(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f} GiB"


def header(lines: list[str], comment: str = "#") -> str:
    """Comment lines. Preset text reaches them only through `comment_safe`; a line break in a line is a bug
    (it would end the comment and let the rest be read as content), so it raises instead of rendering."""
    return "".join(assert_single_line(f"{comment} {line}".rstrip()) + "\n" for line in lines)


def shown(value: str) -> str:
    """A preset value inside a comment (see safe_text.comment_safe)."""
    return comment_safe(value)


# -------------------------------------------------------------------------------------------- quoting

_SHELL_SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def shell_word(word: str) -> str:
    """Quote for sh (shlex); a leading `~/` stays unquoted so the shell expands it (as in the guide's -v),
    only when the rest needs no quoting at all."""
    if word.startswith("~/") and _SHELL_SAFE.fullmatch(word[2:]):
        return word
    return shlex.quote(word)


_SHELL_MESSAGE = re.compile(r"[A-Za-z0-9 _.,:/=()+-]*")


def shell_require(var: str, message: str) -> str:
    """A line that stops the script with MESSAGE when the variable VAR is unset or empty. The message is ours
    (never preset text) and must not need quoting: inside `${VAR:?...}` it is expanded by the shell."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var) or not _SHELL_MESSAGE.fullmatch(message):
        raise ValueError(f"internal error: unsafe shell message {var!r}: {message!r}")
    return f': "${{{var}:?{message}}}"'


def shell_command(words: list[str], head: int = 1, indent: str = "    ") -> str:
    """A command with its first `head` words on the first line, then one option (and its value) per
    line, like `render --format shell`."""
    lines: list[str] = [" ".join(shell_word(word) for word in words[:head])]
    index = head
    while index < len(words):
        word = words[index]
        if (word.startswith("-") and index + 1 < len(words) and not words[index + 1].startswith("-")
                and "=" not in word):
            lines.append(f"{shell_word(word)} {shell_word(words[index + 1])}")
            index += 2
        else:
            lines.append(shell_word(word))
            index += 1
    return f" \\\n{indent}".join(lines)


def health_url(preset: Preset) -> str:
    """Where a local health check reaches the server (a wildcard bind is reached through loopback)."""
    host = preset.host
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{preset.port}/health"


# ----------------------------------------------------------------------------------------------- YAML


def dump_yaml(data: Any) -> str:
    """YAML in insertion order; multi-line strings as literal blocks; no line wrapping."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:  # repeated label dicts stay written out, no &id001
            return True

    def represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        # Double quotes (with escapes) for anything a reader could take for a line break or drop: PyYAML
        # writes NEL/U+2028/U+2029 raw in plain and single-quoted scalars, and reads them back as breaks.
        if any((char in LINE_BREAKS and char != "\n") or not (char.isprintable() or char == "\n")
               for char in value):
            style: str | None = '"'
        else:
            style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, represent_str)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, default_flow_style=False, width=10_000,
                     allow_unicode=True)
