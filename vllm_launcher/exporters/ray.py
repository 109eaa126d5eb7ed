"""`--format ray`: scripts for bare machines, following vLLM's distributed serving docs: `ray start --head`
on one node, `ray start --address=HEAD:PORT` on the others, then `vllm serve ...
--distributed-executor-backend ray` on the head (TP = GPUs per node, PP = nodes is vLLM's recommended
layout)."""

from __future__ import annotations

from vllm_launcher.exporters import common
from vllm_launcher.exporters.docker import secret_exports
from vllm_launcher.exporters.options import ExportOptions
from vllm_launcher.preset.plan import build_plan, plan_env
from vllm_launcher.preset.schema import Preset

# Counts live Ray nodes, as vLLM's multi-node-serving.sh does.
COUNT_NODES = ("import ray; ray.init(address=\"auto\", logging_level=\"ERROR\"); "
               "print(sum(node[\"Alive\"] for node in ray.nodes()))")


def _env_exports(preset: Preset) -> list[str]:
    return [f"export {key}={common.shell_word(value)}" for key, value in plan_env(preset).items()]


def render(preset: Preset, options: ExportOptions) -> dict[str, str]:
    nodes, per_node = common.multinode_layout(preset, "ray")
    tp, pp = preset.tensor_parallel_size or 1, preset.pipeline_parallel_size or 1
    port = options.ray_port
    serve = [*build_plan(preset, "serve").argv, "--distributed-executor-backend", "ray"]
    layout = f"{common.shown(preset.model)} on {nodes} nodes x {per_node} GPUs (TP {tp} x PP {pp})"
    need = ("Run it in the environment that has vLLM and Ray (the same on every node); the model must be\n"
            "at the same path, or in the Hugging Face cache, on every node.")
    head = "#!/bin/sh\n" + common.header([
        f"vllm-launch render {preset.name} --format ray: the head node.",
        f"{layout}.",
        *need.split("\n"),
        "Start this first, then ray-worker.sh on the other nodes; vLLM starts once all nodes have joined.",
        "HEAD_NODE_IP: this machine's address on the network the nodes share (also VLLM_HOST_IP).",
    ]) + "set -eu\n"
    head += common.shell_require("HEAD_NODE_IP", "set HEAD_NODE_IP to the address of this node on the "
                                 "cluster network") + "\n"
    head += 'export VLLM_HOST_IP="$HEAD_NODE_IP"\n'
    head += "".join(line + "\n" for line in [*_env_exports(preset), *secret_exports(preset)])
    head += f'ray start --head --port={port} --node-ip-address="$HEAD_NODE_IP"\n'
    head += (
        f"# Wait up to 300 s until all {nodes} nodes have joined.\n"
        "waited=0\n"
        f"until [ \"$(python3 -c '{COUNT_NODES}' 2>/dev/null || echo 0)\" -ge {nodes} ]; do\n"
        f"    if [ \"$waited\" -ge 300 ]; then echo \"Ray cluster has fewer than {nodes} nodes\" >&2; "
        "exit 1; fi\n"
        "    sleep 5; waited=$((waited + 5))\n"
        "done\n"
    )
    head += "exec " + common.shell_command(serve, head=3) + "\n"

    worker = "#!/bin/sh\n" + common.header([
        (f"vllm-launch render {preset.name} --format ray: a worker node (run on each of the other "
        f"{nodes - 1}). {layout}."),
        *need.split("\n"),
        "HEAD_NODE_IP: the head's address; NODE_IP: this machine's address on the same network.",
    ]) + "set -eu\n"
    worker += common.shell_require("HEAD_NODE_IP", "set HEAD_NODE_IP to the address of the head node") + "\n"
    worker += common.shell_require("NODE_IP", "set NODE_IP to the address of this node on the cluster "
                                   "network") + "\n"
    worker += 'export VLLM_HOST_IP="$NODE_IP"\n'
    # Ray workers inherit this environment: each node loads its share of the weights (HF_TOKEN).
    hf = [line for line in secret_exports(preset) if "HF_TOKEN" in line]
    worker += "".join(line + "\n" for line in [*_env_exports(preset), *hf])
    worker += (f'exec ray start --address="$HEAD_NODE_IP:{port}" --node-ip-address="$NODE_IP" '
               "--block\n")
    return {"ray-head.sh": head, "ray-worker.sh": worker}
