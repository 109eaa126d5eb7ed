"""The override options every preset-taking command accepts, as one table for typer and the fast path."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vllm_launcher.errors import ConfigError

if TYPE_CHECKING:
    from vllm_launcher.presets import Override

# (option, preset field, type, help)
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

# (option, ExportOptions field, type, help): `render --format docker|compose|k8s|lws|ray|systemd`.
EXPORT_OPTIONS: list[tuple[str, str, type, str]] = [
    ("--image-tag", "image_tag", str, "vLLM image tag (default latest)."),
    ("--image", "image", str, "Whole image reference, replacing vllm/vllm-openai[-cpu]:TAG."),
    ("--cpu-arch", "cpu_arch", str, "CPU image architecture: x86_64 or arm64."),
    ("--name", "name", str, "Kubernetes/Compose app name (a DNS label; never `vllm`)."),
    ("--namespace", "namespace", str, "Kubernetes namespace."),
    ("--replicas", "replicas", int, "Deployment / LeaderWorkerSet replicas."),
    ("--startup-timeout", "startup_timeout_s", int, "Start-up budget in seconds (default: from model size)."),
    ("--weights-gib", "weights_gib", float, "Model weights in GiB, for models the catalog does not know."),
    ("--hf-cache-path", "hf_cache_path", str, "Host directory for the Hugging Face cache."),
    ("--pvc", "pvc", str, "Existing PersistentVolumeClaim for the Hugging Face cache (k8s/lws)."),
    ("--secret-name", "secret_name", str, "Kubernetes Secret with VLLM_API_KEY / HF_TOKEN."),
    ("--shm-size", "shm_size_gib", int, "/dev/shm size in GiB."),
    ("--lws-mode", "lws_mode", str, "LeaderWorkerSet mode: ray or native."),
    ("--ray-port", "ray_port", int, "Ray head port (default 6379)."),
    ("--env-file", "env_file", str, "systemd EnvironmentFile holding the secrets."),
    ("--user", "user", str, "systemd User=."),
]


def collect_overrides(values: dict[str, Any]) -> list[Override]:
    """Parsed option values keyed `ov_<field>` (and `ov_set`: the --set items) → overrides, in table order."""
    overrides: list[Override] = []
    for option, field, _kind, _help in OVERRIDE_OPTIONS:
        value = values.get(f"ov_{field}")
        if value is not None:
            overrides.append((option, field, value))
    for item in values.get("ov_set") or []:
        overrides.append(parse_set(item))
    return overrides


def parse_set(item: str) -> Override:
    """`--set key=value`: the value is read as a YAML scalar, so `true`, `8` and `null` are typed."""
    import yaml

    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"expected KEY=VALUE, got {item!r}", source="--set")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return (f"--set {key}", key, value)
