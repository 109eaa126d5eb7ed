"""`--format lws`: a LeaderWorkerSet (group size = nodes) and a Service on the leader, following vLLM's
LWS guide (docs/deployment/frameworks/lws.md). Two modes:

- ray (vLLM's example): the leader runs vLLM's multi-node-serving.sh to start a Ray head and wait for the
  group, then `vllm serve ... --distributed-executor-backend ray`; workers join the Ray cluster.
- native: every pod runs `vllm serve` with `--nnodes --node-rank --master-addr`; workers add `--headless`
  (no API server; vLLM docs/serving/parallelism_scaling.md, "multiprocessing" multi-node).

LWS injects LWS_LEADER_ADDRESS, LWS_GROUP_SIZE and LWS_WORKER_INDEX into every container; Kubernetes
expands $(NAME) references to them in command and args.
"""

from __future__ import annotations

import shlex
from typing import Any

from vllm_launcher.exporters import common, k8s
from vllm_launcher.exporters.options import ExportOptions
from vllm_launcher.preset.schema import Preset

RAY_SCRIPT = "/vllm-workspace/examples/online_serving/multi-node-serving.sh"  # shipped in vLLM's image
RAY_CLUSTER_WAIT_S = 300  # the script's own timeout for the group to join


def leader_worker_commands(preset: Preset, options: ExportOptions) -> tuple[list[str], list[str]]:
    """(leader command, worker command) as container `command` lists."""
    serve = [k8s.literal(arg) for arg in common.serve_argv(preset)]
    if options.lws_mode == "native":
        group = ["--distributed-executor-backend", "mp", "--nnodes", "$(LWS_GROUP_SIZE)",
                 "--master-addr", "$(LWS_LEADER_ADDRESS)"]
        return ([*serve, *group, "--node-rank", "0"],
                [*serve, *group, "--node-rank", "$(LWS_WORKER_INDEX)", "--headless"])
    port = str(options.ray_port)
    # `&&`, not vLLM's example's `;`: do not start vLLM on a Ray cluster that never formed.
    leader_script = (
        f"bash {RAY_SCRIPT} leader --ray_port={port} --ray_cluster_size=$(LWS_GROUP_SIZE) && exec "
        + " ".join(shlex.quote(arg) for arg in [*serve, "--distributed-executor-backend", "ray"]))
    worker = ["bash", RAY_SCRIPT, "worker", "--ray_address=$(LWS_LEADER_ADDRESS)", f"--ray_port={port}"]
    return ["sh", "-c", leader_script], worker


def render(preset: Preset, options: ExportOptions) -> dict[str, str]:
    nodes, per_node = common.multinode_layout(preset, "lws")
    name = common.app_name(preset, options)
    size = common.sizing(preset, options)
    startup_s = size.startup_s + (RAY_CLUSTER_WAIT_S if options.lws_mode == "ray" else 0)
    memory_gib, memory_why = common.memory_request_gib(preset, size, nodes)
    leader_cmd, worker_cmd = leader_worker_commands(preset, options)
    image = common.image(preset, options)
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": k8s.PART_OF}

    def pod(role: str, command: list[str]) -> dict[str, Any]:
        container: dict[str, Any] = {"name": f"vllm-{role}", "image": image, "command": command}
        if role == "leader":
            container["ports"] = [{"name": "http", "containerPort": preset.port, "protocol": "TCP"}]
        # Every pod loads its share of the weights: all need HF_TOKEN; only the API server needs the key.
        container["env"] = k8s.env_list(preset, name, options, api_key=role == "leader")
        container["resources"] = k8s.resources(preset, memory_gib, per_node)
        container["volumeMounts"] = k8s.volume_mounts()
        if role == "leader":  # workers serve no HTTP: nothing to probe
            container.update(k8s.probes(startup_s))
        return {
            "metadata": {"labels": {**labels, "role": role}},
            "spec": {
                "enableServiceLinks": False,  # no VLLM_PORT=tcp://... from a Service named vllm
                "terminationGracePeriodSeconds": 60,
                "containers": [container],
                "volumes": [k8s.hf_cache_volume(options, None, size.weights_gib),
                            k8s.shm_volume(preset, options, per_node)],
            },
        }

    lws = {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": k8s.metadata(name, options, labels),
        "spec": {
            "replicas": options.replicas,
            "leaderWorkerTemplate": {
                "size": nodes,
                # One pod restarting breaks the whole distributed group: recreate all of them.
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": pod("leader", leader_cmd),
                "workerTemplate": pod("worker", worker_cmd),
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": k8s.metadata(name, options, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": {"leaderworkerset.sigs.k8s.io/name": name, "role": "leader"},
            "ports": [{"name": "http", "port": preset.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    tp, pp = preset.tensor_parallel_size or 1, preset.pipeline_parallel_size or 1
    cache = ("hostPath " + common.shown(options.hf_cache_path) if options.hf_cache_path else
             f"claim {options.pvc} (must be ReadWriteMany)" if options.pvc else
             "an emptyDir per pod (each pod downloads; use --pvc for a ReadWriteMany claim)")
    comments = [
        (f"vllm-launch render {preset.name} --format lws ({options.lws_mode} mode): "
         f"{common.shown(preset.model)} on {nodes} nodes x {per_node} GPUs (TP {tp} x PP {pp})."),
        "Needs the LeaderWorkerSet controller (https://lws.sigs.k8s.io/docs/installation/).",
        "vLLM listens on 0.0.0.0 in the leader pod (its own network namespace); the Service reaches it.",
        f"Leader startupProbe budget {startup_s} s ({size.weights_source}: {common.fmt_gib(size.weights_gib)}"
        + (f", + {RAY_CLUSTER_WAIT_S} s for the Ray cluster)." if options.lws_mode == "ray" else ")."),
        f"Memory request per pod {memory_gib}Gi: {memory_why}.",
        f"Hugging Face cache: {cache}.",
        *k8s.secret_hint(preset, name, options),
    ]
    return {"lws.yaml": k8s.document(comments, lws),
            "service.yaml": k8s.document([f"Service {name!r} on the leader pod of LeaderWorkerSet {name!r}."],
                                         service)}
