"""`--format k8s`: a Deployment and a Service (and a PVC for the Hugging Face cache), following vLLM's
Kubernetes guide (docs/deployment/k8s.md) and its troubleshooting entry on start-up probes."""

from __future__ import annotations

import math
from typing import Any

from vllm_launcher.exporters import common
from vllm_launcher.exporters.options import ExportOptions
from vllm_launcher.preset.schema import Preset

PROBE_PERIOD_S = 10
PART_OF = "vllm-launch"


def literal(value: str) -> str:
    """VALUE as Kubernetes passes it on: it expands $(VAR) in command, args and env values and reads `$$`
    as one `$`, so every `$` is doubled (k8s.io/kubernetes third_party/forked/golang/expansion)."""
    return value.replace("$", "$$")


def metadata(name: str, options: ExportOptions, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if options.namespace:
        meta["namespace"] = options.namespace
    meta["labels"] = labels or {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": PART_OF}
    return meta


def secret_name(name: str, options: ExportOptions) -> str:
    return options.secret_name or f"{name}-secrets"


def env_list(preset: Preset, name: str, options: ExportOptions, api_key: bool = True) -> list[dict[str, Any]]:
    """Container env: secrets from the Secret by key (VLLM_API_KEY required, HF_TOKEN optional), then
    plain values. The Secret itself is never rendered: its values are the user's."""
    env: list[dict[str, Any]] = []
    for secret in common.secrets(preset):
        if secret.var == "VLLM_API_KEY" and not api_key:
            continue
        ref: dict[str, Any] = {"name": secret_name(name, options), "key": secret.var}
        if not secret.required:
            ref["optional"] = True
        env.append({"name": secret.var, "valueFrom": {"secretKeyRef": ref}})
    env += [{"name": key, "value": literal(value)} for key, value in common.container_env(preset).items()]
    return env


def secret_hint(preset: Preset, name: str, options: ExportOptions) -> list[str]:
    keys = " ".join(f'--from-literal={s.var}="${s.source}"' for s in common.secrets(preset))
    return [f"Secrets come from Secret {secret_name(name, options)!r}; create it from your shell (values are",
            f"never written here): kubectl create secret generic {secret_name(name, options)} {keys}"]


def http_probe(port_name: str, period_s: int, failures: int, timeout_s: int) -> dict[str, Any]:
    return {"httpGet": {"path": "/health", "port": port_name}, "periodSeconds": period_s,
            "timeoutSeconds": timeout_s, "failureThreshold": failures}


def probes(startup_s: int) -> dict[str, Any]:
    """startupProbe with failureThreshold × periodSeconds = the start-up budget (vLLM answers /health only
    once the model is loaded; a short budget kills it mid-load, vLLM's "KeyboardInterrupt: terminated");
    then readiness (take it out of the Service) and liveness (/health answers 503 once the engine died)."""
    return {
        "startupProbe": http_probe("http", PROBE_PERIOD_S, math.ceil(startup_s / PROBE_PERIOD_S), 5),
        "readinessProbe": http_probe("http", 5, 3, 5),
        "livenessProbe": http_probe("http", 10, 3, 10),
    }


def resources(preset: Preset, memory_gib: int, gpus: int) -> dict[str, Any]:
    """Whole GPUs as both request and limit (an extended resource needs the limit; a fraction would not
    schedule a GPU at all); memory as a request sized from the weights."""
    requests: dict[str, Any] = {"memory": f"{memory_gib}Gi"}
    if preset.device == "cuda":
        requests["nvidia.com/gpu"] = gpus
        return {"requests": requests, "limits": {"nvidia.com/gpu": gpus}}
    return {"requests": requests}


def shm_volume(preset: Preset, options: ExportOptions, gpus: int) -> dict[str, Any]:
    size = common.shm_size_gib(preset, options, gpus)
    return {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{size}Gi"}}


def hf_cache_volume(options: ExportOptions, default_claim: str | None,
                    weights_gib: float | None) -> dict[str, Any]:
    """The Hugging Face cache: a hostPath (--hf-cache-path), an existing claim (--pvc), the claim this
    render creates (`default_claim`), else an emptyDir sized for the weights."""
    if options.hf_cache_path:
        return {"name": "hf-cache", "hostPath": {"path": options.hf_cache_path, "type": "DirectoryOrCreate"}}
    claim = options.pvc or default_claim
    if claim:
        return {"name": "hf-cache", "persistentVolumeClaim": {"claimName": claim}}
    return {"name": "hf-cache", "emptyDir": {"sizeLimit": f"{cache_size_gib(weights_gib)}Gi"}}


def cache_size_gib(weights_gib: float | None) -> int:
    """Disk for the HF cache: the weights plus a fifth (tokenizer, other formats), at least 50 GiB."""
    return 100 if weights_gib is None else max(50, math.ceil(weights_gib * 1.2) + 10)


def volume_mounts() -> list[dict[str, str]]:
    return [{"name": "hf-cache", "mountPath": common.HF_CACHE_IN_CONTAINER},
            {"name": "dshm", "mountPath": "/dev/shm"}]


def cpu_security(preset: Preset) -> dict[str, Any]:
    """vLLM's CPU image binds OpenMP threads and NUMA memory: SYS_NICE and no seccomp filter, as its
    docker example (--cap-add SYS_NICE --security-opt seccomp=unconfined)."""
    if preset.device != "cpu":
        return {}
    return {"securityContext": {"capabilities": {"add": ["SYS_NICE"]},
                                "seccompProfile": {"type": "Unconfined"}}}


def document(comments: list[str], obj: dict[str, Any]) -> str:
    """One YAML document starting with `---`, so that files printed one after another form a valid
    multi-document stream (`render ... | kubectl apply -f -`)."""
    return common.header(comments) + "---\n" + common.dump_yaml(obj)


def render(preset: Preset, options: ExportOptions) -> dict[str, str]:
    common.require_single_node(preset, "k8s")
    name = common.app_name(preset, options)
    gpus = common.gpu_count(preset)
    size = common.sizing(preset, options)
    memory_gib, memory_why = common.memory_request_gib(preset, size)
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": PART_OF}
    own_claim = None if options.hf_cache_path or options.pvc else f"{name}-hf-cache"
    argv = common.serve_argv(preset)
    container: dict[str, Any] = {
        "name": "vllm",
        "image": common.image(preset, options),
        "command": argv[:2],
        "args": [literal(arg) for arg in argv[2:]],
        "ports": [{"name": "http", "containerPort": preset.port, "protocol": "TCP"}],
        "env": env_list(preset, name, options),
        "resources": resources(preset, memory_gib, gpus),
        "volumeMounts": volume_mounts(),
        **probes(size.startup_s),
        **cpu_security(preset),
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, options, labels),
        "spec": {
            "replicas": options.replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            # Recreate: a rolling update would need a second set of GPUs while the old pod still holds them.
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    # No Service env vars: a Service named vllm injects VLLM_PORT=tcp://..., breaking vLLM.
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 60,
                    "containers": [container],
                    "volumes": [hf_cache_volume(options, own_claim, size.weights_gib),
                                shm_volume(preset, options, gpus)],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, options, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": name},
            "ports": [{"name": "http", "port": preset.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    where = f"{gpus} GPU(s)" if preset.device == "cuda" else "the CPU"
    comments = [
        f"vllm-launch render {preset.name} --format k8s: {common.shown(preset.model)} on {where}.",
        "vLLM listens on 0.0.0.0 in the pod (its own network namespace); the Service decides who reaches it.",
        (f"startupProbe budget {size.startup_s} s ({size.weights_source}: "
         f"{common.fmt_gib(size.weights_gib)}); override with --startup-timeout."),
        f"Memory request {memory_gib}Gi: {memory_why}.",
        *secret_hint(preset, name, options),
    ]
    files = {"deployment.yaml": document(comments, deployment),
             "service.yaml": document([f"Service {name!r} for Deployment {name!r}."], service)}
    if own_claim:
        claim = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": metadata(own_claim, options, labels),
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": f"{cache_size_gib(size.weights_gib)}Gi"}}},
        }
        files["pvc.yaml"] = document(
            ["Hugging Face cache, kept across restarts (use --pvc NAME for an existing claim, or",
             "--hf-cache-path /DIR for a hostPath)."], claim)
    return files
