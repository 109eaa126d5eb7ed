"""VL2xx: memory checks, from the fit estimate (`memory.estimate`) and the machine's free memory.

vLLM 0.32's own rules, quoted from its source:
- GPU (v1/worker/utils.py): requested = total x gpu_memory_utilization; start-up fails when the GPU's
  free memory is below it ("Free memory on device ... is less than desired GPU memory utilization").
- CPU (v1/worker/cpu_worker.py): without an explicit KV size (VLLM_CPU_KVCACHE_SPACE or
  --kv-cache-memory-bytes) the worker requests ceil(NUMA node total x gpu_memory_utilization), default
  0.92 (config/cache.py), and fails when that is above the node's available memory ("Available memory
  on node 0 ... is less than desired CPU memory utilization"). An explicit KV size above the node's
  available memory fails too.
"""

from __future__ import annotations

import math

from vllm_launcher.base.units import GIB
from vllm_launcher.doctor.findings import Facts, Hit
from vllm_launcher.doctor.rules_preset import effective_max_model_len, world_size

VLLM_DEFAULT_UTILIZATION = 0.92  # vLLM 0.32 config/cache.py (0.9 in older releases)
# How estimate.py words its reasons and fixes about vLLM's default CPU KV sizing (kv_cache_space_gib unset);
# VL205 repeats them (tests/test_doctor_rules.py checks that the two agree).
ESTIMATE_DEFAULT_KV_REASON = "kv_cache_space_gib is unset"
ESTIMATE_DEFAULT_KV_FIX = "set kv_cache_space_gib (e.g."
CPU_WORKER_RUNTIME_GIB = 1.0  # the worker's own memory beside weights (estimate.py)


def _gib(value_bytes: float) -> float:
    return value_bytes / GIB


def node0_memory(hardware) -> tuple[int, int] | None:
    """(total, available) bytes of NUMA node 0, which vLLM's CPU worker binds to; RAM when not exposed."""
    if hardware is None:
        return None
    for node in hardware.numa_nodes or []:
        if node.id == 0 and node.total_bytes is not None and node.free_bytes is not None:
            return node.total_bytes, node.free_bytes
    return hardware.ram_total_bytes, hardware.ram_available_bytes


def explicit_kv_bytes(facts: Facts) -> int | None:
    """KV space fixed by the preset (kv_cache_space_gib), the environment, or an extra flag."""
    p = facts.preset
    if p.kv_cache_space_gib is not None:
        return p.kv_cache_space_gib * GIB
    env_value = facts.env.get("VLLM_CPU_KVCACHE_SPACE", "").strip()
    if p.device == "cpu" and env_value.isdigit():
        return int(env_value) * GIB
    for arg in p.extra_args:
        if arg.startswith("--kv-cache-memory-bytes="):
            try:
                return int(float(arg.split("=", 1)[1]))
            except ValueError:
                return None
    return None


def _utilization(preset) -> float:
    return (preset.gpu_memory_utilization if preset.gpu_memory_utilization is not None
            else VLLM_DEFAULT_UTILIZATION)


def kv_below_one_request(facts: Facts) -> Hit | None:
    est, p, hw = facts.estimate, facts.preset, facts.hardware
    if est is None or (p.device == "cuda" and (hw is None or not hw.gpus)) or _weights_overflow(facts):
        return None  # no GPU here (VL108) or the weights alone do not fit (VL202)
    if p.device == "cpu" and cpu_default_reservation(facts) is not None:
        return None  # the default KV sizing fails anyway (VL205), whose fix sets the KV size
    length = getattr(est, "effective_max_model_len", None) or effective_max_model_len(facts)
    tokens = getattr(est, "kv_cache_tokens", None)
    largest = getattr(est, "largest_max_model_len", None) or 0
    if length is None or tokens is None or largest >= length or (not largest and tokens >= length):
        return None
    kv_gib = getattr(est, "kv_cache_gib", 0.0) or 0.0
    if kv_gib <= 0:
        return Hit(f"nothing is left for the KV cache after the weights and runtime (max_model_len "
                   f"{length}): vLLM refuses to start (\"No available memory for the cache blocks\")",
                   "set kv_cache_space_gib (CPU), raise gpu_memory_utilization, lower "
                   "max_num_batched_tokens, or use a smaller model or more GPUs")
    fixes = []
    if largest > 0:
        fixes.append(f"set max_model_len: {largest} (the largest that fits)")
    need_gib = kv_gib * length / tokens if tokens > 0 else None
    if p.device == "cpu":
        if need_gib:
            fixes.append(f"or kv_cache_space_gib: {math.ceil(need_gib)}")
    else:
        fixes.append("or raise gpu_memory_utilization, set kv_cache_dtype: fp8, or add GPUs "
                     "(tensor_parallel_size)")
    need = f" ({need_gib:.2f} GiB needed)" if need_gib else ""
    return Hit(f"the KV cache holds {tokens} tokens ({kv_gib:.2f} GiB), less than one max_model_len request "
               f"of {length} tokens{need}: vLLM refuses to start", " ".join(fixes))


def _weights_overflow(facts: Facts) -> tuple[float, float, float] | None:
    """(weights GiB, per GPU, usable per GPU) when the weights alone overflow the GPUs, else None."""
    est, p, hw = facts.estimate, facts.preset, facts.hardware
    if est is None or p.device != "cuda" or hw is None or not hw.gpus:
        return None
    weights_gib = getattr(est, "weights_gib", None)
    if not weights_gib:
        return None
    per_gpu_gib = weights_gib / world_size(p)
    usable_gib = _gib(min(g.total_bytes for g in hw.gpus[: world_size(p)])) * _utilization(p)
    return (weights_gib, per_gpu_gib, usable_gib) if per_gpu_gib >= usable_gib else None


def weights_do_not_fit(facts: Facts) -> Hit | None:
    p = facts.preset
    overflow = _weights_overflow(facts)
    if overflow is None:
        return None
    weights_gib, per_gpu_gib, usable_gib = overflow
    gpus_needed = math.ceil(weights_gib / usable_gib) if usable_gib > 0 else 0
    return Hit(f"weights take {weights_gib:.1f} GiB ({per_gpu_gib:.1f} GiB per GPU at TP x PP = "
               f"{world_size(p)}), more than the {usable_gib:.1f} GiB vLLM may use per GPU "
               f"(utilization {_utilization(p)})",
               f"set tensor_parallel_size: {max(gpus_needed + 1, 2)} (or more GPUs), use a quantized model, "
               "or a smaller model")


def cpu_kv_above_available(facts: Facts) -> Hit | None:
    p = facts.preset
    kv = explicit_kv_bytes(facts)
    memory = node0_memory(facts.hardware)
    if p.device != "cpu" or kv is None or memory is None:
        return None
    total, available = memory
    weights_gib = getattr(facts.estimate, "weights_gib", None) or 0.0
    fit = max(int(_gib(available)) - 1, 1)
    if kv <= available:
        # vLLM compares the KV size with the node's available memory after loading the weights.
        after_load_gib = _gib(available) - weights_gib - CPU_WORKER_RUNTIME_GIB
        if weights_gib and _gib(kv) > after_load_gib:
            fit = max(int(after_load_gib), 1)
            return Hit(f"KV space {_gib(kv):.0f} GiB + weights {weights_gib:.1f} GiB is more than the "
                       f"{_gib(available):.1f} GiB available on NUMA node 0: the KV allocation will likely "
                       "fail after loading", f"set kv_cache_space_gib: {fit}, or a smaller model / dtype",
                       severity="warning")
        return None
    return Hit(f"KV space {_gib(kv):.0f} GiB is above the {_gib(available):.1f} GiB available on NUMA node 0 "
               f"({_gib(total):.1f} GiB total): vLLM refuses to allocate it",
               f"set kv_cache_space_gib: {fit} (VLLM_CPU_KVCACHE_SPACE={fit}), or free memory")


def cpu_ram_short(facts: Facts) -> Hit | None:
    est, p = facts.estimate, facts.preset
    if est is None or p.device != "cpu":
        return None
    needed, available = getattr(est, "ram_needed_gib", None), getattr(est, "ram_available_gib", None)
    if needed is None or available is None or needed <= available:
        return None
    weights = getattr(est, "weights_gib", 0.0) or 0.0
    fix = "lower kv_cache_space_gib, use a smaller model, or free memory"
    if p.dtype in ("float32", "float") and weights:
        fix += f"; dtype: bfloat16 halves the weights ({weights:.1f} GiB in float32)"
    return Hit(f"this preset needs about {needed:.1f} GiB of RAM (weights {weights:.1f} GiB + KV cache + "
               f"runtime), {available:.1f} GiB is available", fix)


def cpu_default_reservation(facts: Facts) -> Hit | None:
    """The estimate's verdict on vLLM's default CPU KV sizing, its words and numbers: `vllm-launch estimate`
    and `doctor` must never disagree (one source: `vllm_launcher.memory.estimate`)."""
    est, p = facts.estimate, facts.preset
    if p.device != "cpu" or est is None or explicit_kv_bytes(facts) is not None:
        return None
    reasons = [reason for reason in est.reasons if reason.startswith(ESTIMATE_DEFAULT_KV_REASON)]
    if not reasons:
        return None
    fixes = [fix for fix in est.fixes if fix.startswith(ESTIMATE_DEFAULT_KV_FIX)]
    fix = "; ".join(dict.fromkeys(fixes)) or "set kv_cache_space_gib"
    return Hit("; ".join(reasons), f"{fix} (kv_cache_space_gib is VLLM_CPU_KVCACHE_SPACE; --kv-cache GIB on "
               "the command line)")


def gpu_busy(facts: Facts) -> Hit | None:
    p, hw = facts.preset, facts.hardware
    if p.device != "cuda" or hw is None or not hw.gpus:
        return None
    utilization = _utilization(p)
    for gpu in hw.gpus[: world_size(p)]:
        requested = gpu.total_bytes * utilization
        if gpu.free_bytes >= requested:
            continue
        fit = math.floor(gpu.free_bytes / gpu.total_bytes * 100) / 100 - 0.02
        fix = (f"set gpu_memory_utilization: {fit:.2f}, or stop what uses GPU {gpu.index} (nvidia-smi)"
               if fit > 0.1 else f"stop what uses GPU {gpu.index} (nvidia-smi), or pick another GPU")
        return Hit(f"GPU {gpu.index} ({gpu.name}) has {_gib(gpu.free_bytes):.1f} of "
                   f"{_gib(gpu.total_bytes):.1f} GiB free, less than gpu_memory_utilization {utilization} x "
                   f"total = {_gib(requested):.1f} GiB: vLLM refuses to start", fix)
    return None
