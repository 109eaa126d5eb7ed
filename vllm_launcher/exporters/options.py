"""`ExportOptions`: what `render --format docker|compose|k8s|lws|ray|systemd` needs besides the preset."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vllm_launcher.base.errors import ConfigError

# Kubernetes object names: DNS-1035 labels (Services need them); 40 characters leave room for suffixes
# such as `-hf-cache` and LeaderWorkerSet pod names (`NAME-0-1`).
K8S_NAME = r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$"
K8S_NAMESPACE = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
# Bounds past which a value is a typo (and would overflow the arithmetic of probes and budgets).
MAX_REPLICAS = 10_000
MAX_STARTUP_S = 7 * 24 * 3600
MAX_WEIGHTS_GIB = 1_000_000
MAX_SHM_GIB = 16_384


class ExportOptions(BaseModel):
    """Options shared by every exporter; each exporter reads the ones that apply to it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    image_tag: str = Field(default="latest", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
    # A whole image reference ([registry[:port]/]name[:tag][@digest]) replacing vllm/vllm-openai[-cpu]:TAG.
    image: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}$")
    # vLLM publishes its CPU image per architecture: vllm/vllm-openai-cpu:TAG-x86_64 or TAG-arm64.
    cpu_arch: Literal["x86_64", "arm64"] = "x86_64"
    # Kubernetes/Compose name of the app (Deployment, Service, LeaderWorkerSet, compose service).
    name: str | None = Field(default=None, pattern=K8S_NAME)
    namespace: str | None = Field(default=None, pattern=K8S_NAMESPACE)
    replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS)
    # Start-up budget (seconds) for the startupProbe, compose's start_period and systemd's TimeoutStartSec;
    # default: derived from the model's weight size.
    startup_timeout_s: int | None = Field(default=None, ge=60, le=MAX_STARTUP_S)
    # The model's weights in GiB, for models the catalog does not know (sizes probes and memory requests).
    weights_gib: float | None = Field(default=None, gt=0, le=MAX_WEIGHTS_GIB)
    # Hugging Face cache: a host directory (docker/compose bind mount; k8s/lws hostPath, absolute), or an
    # existing PersistentVolumeClaim (k8s/lws). Neither: docker/compose mount ~/.cache/huggingface, k8s
    # renders a PVC, lws uses an emptyDir per pod (a ReadWriteOnce claim cannot span nodes).
    # No ':' (docker -v and compose volumes split on it) and nothing a shell, YAML or unit file must unquote.
    hf_cache_path: str | None = Field(default=None,
                                      pattern=r"^[A-Za-z0-9_.~/@+=,-][A-Za-z0-9_.~/@+=, -]{0,4095}$")
    pvc: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    # Kubernetes Secret holding the keys VLLM_API_KEY and HF_TOKEN (default: NAME-secrets).
    secret_name: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    shm_size_gib: int | None = Field(default=None, ge=1, le=MAX_SHM_GIB)
    # LeaderWorkerSet: Ray (vLLM's LWS example) or vLLM's native multi-node (--nnodes/--node-rank/--headless).
    lws_mode: Literal["ray", "native"] = "ray"
    ray_port: int = Field(default=6379, ge=1, le=65535)
    # systemd: the env file holding VLLM_API_KEY / HF_TOKEN (default /etc/vllm-launch/PRESET.env), User=.
    env_file: str | None = Field(default=None, pattern=r"^/[A-Za-z0-9_.@+=,/-]{1,4095}$")
    user: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_-]*[$]?$")


OPTION_FLAGS = {  # field -> CLI option, to name the option in error messages
    "image_tag": "--image-tag", "image": "--image", "cpu_arch": "--cpu-arch", "name": "--name",
    "namespace": "--namespace", "replicas": "--replicas", "startup_timeout_s": "--startup-timeout",
    "weights_gib": "--weights-gib", "hf_cache_path": "--hf-cache-path", "pvc": "--pvc",
    "secret_name": "--secret-name", "shm_size_gib": "--shm-size", "lws_mode": "--lws-mode",
    "ray_port": "--ray-port", "env_file": "--env-file", "user": "--user",
}


def make_options(**values: Any) -> ExportOptions:
    """ExportOptions from CLI values (None: the default). Raises ConfigError naming the option."""
    try:
        return ExportOptions(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        message = error["msg"]
        if error["type"] == "string_pattern_mismatch" and field in ("name", "namespace"):
            message = "must be lower-case letters, digits and '-', starting with a letter (a DNS label)"
        raise ConfigError(f"{message} (got {error.get('input')!r})",
                          source=OPTION_FLAGS.get(field, field)) from None
