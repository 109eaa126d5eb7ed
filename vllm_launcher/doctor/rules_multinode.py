"""VL12x: multi-node layout checks (presets with `nodes` > 1, rendered with `--format lws|ray`).

vLLM's docs (serving/parallelism_scaling.md): across nodes, set tensor_parallel_size to the GPUs per node
and pipeline_parallel_size to the number of nodes. Whether the model's attention heads divide the TP size
is VL105 (rules_preset), which applies to multi-node presets unchanged.
"""

from __future__ import annotations

from vllm_launcher.doctor.findings import Facts, Hit


def _tp_pp(preset) -> tuple[int, int]:
    return preset.tensor_parallel_size or 1, preset.pipeline_parallel_size or 1


def layout_multiplies_out(facts: Facts) -> Hit | None:
    p = facts.preset
    if (p.nodes or 1) <= 1 and not p.gpus_per_node:
        return None
    tp, pp = _tp_pp(p)
    world = tp * pp
    if p.nodes <= 1 and p.gpus_per_node:
        if world <= p.gpus_per_node:
            return None
        return Hit(f"tensor_parallel_size x pipeline_parallel_size = {tp} x {pp} = {world} GPUs, more than "
                   f"gpus_per_node ({p.gpus_per_node}) on the preset's one node",
                   f"set nodes: {-(-world // p.gpus_per_node)} (and render with --format lws or ray), or "
                   f"lower tensor_parallel_size / pipeline_parallel_size")
    per_node = p.gpus_per_node
    if per_node is None:
        if world % p.nodes == 0:
            return None
        return Hit(f"tensor_parallel_size x pipeline_parallel_size = {tp} x {pp} = {world} GPUs do not split "
                   f"evenly over {p.nodes} nodes",
                   f"set gpus_per_node, tensor_parallel_size = GPUs per node and pipeline_parallel_size: "
                   f"{p.nodes}")
    if world == p.nodes * per_node:
        return None
    return Hit(f"tensor_parallel_size x pipeline_parallel_size = {tp} x {pp} = {world} must equal "
               f"nodes x gpus_per_node = {p.nodes} x {per_node} = {p.nodes * per_node}",
               f"set tensor_parallel_size: {per_node} and pipeline_parallel_size: {p.nodes} (vLLM's usual "
               "layout: TP = GPUs per node, PP = nodes)")


def multinode_needs_gpus(facts: Facts) -> Hit | None:
    p = facts.preset
    if p.nodes <= 1 or p.device == "cuda":
        return None
    return Hit(f"nodes: {p.nodes} with device: cpu; vLLM's CPU backend runs on one machine",
               "set nodes: 1, or device: cuda with gpus_per_node")


def tensor_parallel_within_node(facts: Facts) -> Hit | None:
    p = facts.preset
    if p.nodes <= 1 or not p.gpus_per_node:
        return None
    tp, pp = _tp_pp(p)
    if tp <= p.gpus_per_node or tp * pp != p.nodes * p.gpus_per_node:  # a wrong layout is VL120's
        return None
    return Hit(f"tensor_parallel_size {tp} is larger than gpus_per_node ({p.gpus_per_node}): every layer's "
               "all-reduce crosses the network, which is slow without InfiniBand/RDMA",
               f"prefer tensor_parallel_size: {p.gpus_per_node} and pipeline_parallel_size: "
               f"{tp * pp // p.gpus_per_node}")
