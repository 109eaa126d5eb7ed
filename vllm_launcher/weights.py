"""Weights bytes of a model as vLLM holds them: by parameter group, quantization and parallel layout. Pure.

A checkpoint's `quantization_config` (or the preset's `quantization`, vLLM's online quantization) says how
many bytes each quantized weight takes with its scales and zeros; embeddings, the LM head, norms, routers
and vision towers stay in the run dtype. Pipeline parallelism puts the embedding (and vision tower) on the
first stage and the LM head on the last, with vLLM's uneven split of the layers (get_pp_indices);
tensor parallelism splits every stage evenly. The safetensors size, when the files are at hand, is the
authority for the total; the parameter model only splits it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel

if TYPE_CHECKING:
    from vllm_launcher.models import ModelArch

DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2, "fp8": 1, "float8": 1}
MXFP4_BLOCK = 32  # OCP MX: one 8-bit scale per 32 FP4 values
BNB_BLOCK = 64  # bitsandbytes 4-bit: one fp32 absmax per 64 values (a second level when double-quantized)


class Quant(BaseModel):
    """How the quantized linear layers of a model are stored."""

    method: str  # vLLM's name: fp8, gptq, awq, compressed-tensors, mxfp4, bitsandbytes, modelopt, ...
    bits: int  # bits per quantized weight
    group_size: int | None = None  # one scale (and zero) per this many inputs; None: per channel/tensor
    block: int | None = None  # block-wise (fp8 [128, 128]): one fp32 scale per block x block weights
    zero_point: bool = False  # an integer zero per group, packed like the weights
    scale_bits: int = 16  # the group scale's width (fp16/bf16; 8 for MX and NVFP4 scales)
    experts_only: bool = False  # gpt-oss MXFP4, experts_int8: only the MoE experts are quantized
    double_quant: bool = False  # bitsandbytes nested quantization of the absmax values
    source: str = "checkpoint"  # "checkpoint" (quantization_config) or "preset" (online quantization)

    def bytes_per_weight(self) -> float:
        if self.method == "bitsandbytes":
            if self.bits >= 8:
                return 1.0
            absmax = 1 / BNB_BLOCK + 4 / (BNB_BLOCK * 256) if self.double_quant else 4 / BNB_BLOCK
            return self.bits / 8 + absmax
        per = self.bits / 8
        if self.block:
            per += 4 / (self.block * self.block)
        if self.group_size:
            per += (self.scale_bits / 8 + (self.bits / 8 if self.zero_point else 0)) / self.group_size
        return per


def _int(value: object, default: int | None = None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _compressed_tensors(quant: dict) -> Quant | None:
    for group in (quant.get("config_groups") or {}).values():
        weights = group.get("weights") if isinstance(group, dict) else None
        if not isinstance(weights, dict) or not _int(weights.get("num_bits")):
            continue
        bits = int(weights["num_bits"])
        strategy = str(weights.get("strategy", "")).lower()
        group_size = _int(weights.get("group_size")) if strategy in ("group", "tensor_group") else None
        group_size = group_size if group_size and group_size > 0 else None
        block = weights.get("block_structure")
        block_size = _int(block[0]) if isinstance(block, list) and block else None
        return Quant(method="compressed-tensors", bits=bits, group_size=group_size, block=block_size,
                     zero_point=weights.get("symmetric") is False,
                     scale_bits=8 if weights.get("type") == "float" and bits == 4 else 16)
    return None


def quant_from_config(config: dict) -> Quant | None:
    """The checkpoint's quantization from config.json's `quantization_config` (None: not quantized)."""
    quant = config.get("quantization_config")
    if not isinstance(quant, dict):
        return None
    method = str(quant.get("quant_method", "")).lower().replace("_", "-")
    group = _int(quant.get("group_size"), 128)
    if method == "compressed-tensors":
        return _compressed_tensors(quant)
    if method in ("gptq", "awq", "gptq-marlin", "awq-marlin", "auto-round", "moe-wna16"):
        bits = _int(quant.get("bits"), _int(quant.get("w_bit"), 4)) or 4
        zero = method.startswith("gptq") or bool(quant.get("zero_point", True))
        return Quant(method=method.replace("-", "_"), bits=bits,
                     group_size=group if group and group > 0 else None, zero_point=zero)
    if method in ("fp8", "fbgemm-fp8"):
        block = quant.get("weight_block_size")
        return Quant(method=method.replace("-", "_"), bits=8,
                     block=_int(block[0]) if isinstance(block, list) and block else None)
    if method in ("mxfp4", "gpt-oss-mxfp4"):
        skipped = " ".join(str(m) for m in quant.get("modules_to_not_convert") or [])
        return Quant(method="mxfp4", bits=4, group_size=MXFP4_BLOCK, scale_bits=8,
                     experts_only="self_attn" in skipped or not skipped)
    if method == "bitsandbytes" or quant.get("load_in_4bit") or quant.get("load_in_8bit"):
        return Quant(method="bitsandbytes", bits=8 if quant.get("load_in_8bit") else 4,
                     double_quant=bool(quant.get("bnb_4bit_use_double_quant")))
    if method == "modelopt":
        algo = str(quant.get("quant_algo", "")).upper()
        if "NVFP4" in algo or "FP4" in algo:
            return Quant(method="modelopt_fp4", bits=4, group_size=16, scale_bits=8)
        return Quant(method="modelopt", bits=8)
    other_bits = _int(quant.get("bits"))
    return Quant(method=method or "unknown", bits=other_bits,
                 group_size=group if group and group > 0 else None) if other_bits else None


# Online quantization (the preset's `quantization` on an unquantized checkpoint): what vLLM 0.32 makes of
# the bf16 weights at load (vllm/model_executor/layers/quantization/online, fp8.py, experts_int8.py).
ONLINE = {
    "fp8": Quant(method="fp8", bits=8, source="preset"),
    "fp8_per_tensor": Quant(method="fp8", bits=8, source="preset"),
    "fp8_per_channel": Quant(method="fp8", bits=8, source="preset"),
    "fp8_per_block": Quant(method="fp8", bits=8, block=128, source="preset"),
    # MoE experts only: the linear layers stay unquantized (config/quantization.py _ONLINE_SHORTHANDS).
    "int8_per_channel_weight_only": Quant(method="int8", bits=8, experts_only=True, source="preset"),
    "nvfp4_per_token": Quant(method="nvfp4", bits=4, group_size=16, scale_bits=8, experts_only=True,
                             source="preset"),
    "mxfp8": Quant(method="mxfp8", bits=8, group_size=MXFP4_BLOCK, scale_bits=8, source="preset"),
    "mxfp4": Quant(method="mxfp4", bits=4, group_size=MXFP4_BLOCK, scale_bits=8, source="preset"),
    "experts_int8": Quant(method="experts_int8", bits=8, experts_only=True, source="preset"),
}
# Methods that name a checkpoint format: the same family as the checkpoint's, or vLLM refuses to load it.
FAMILY = {"gptq_marlin": "gptq", "auto_gptq": "gptq", "awq_marlin": "awq", "auto_awq": "awq",
          "gpt_oss_mxfp4": "mxfp4", "modelopt_fp4": "modelopt", "modelopt_mxfp8": "modelopt",
          "modelopt_mixed": "modelopt", "fbgemm_fp8": "fp8"}


def family(method: str) -> str:
    return FAMILY.get(method.replace("-", "_") if method != "compressed-tensors" else method,
                      method.replace("-", "_") if method != "compressed-tensors" else method)


# Methods vLLM accepts next to several checkpoint formats (or whose checks we cannot know): never refused.
PERMISSIVE = {"moe_wna16", "humming", "inc", "quark", "torchao", "online", "experts_int8"}
# Shorthands that are also checkpoint formats: online only when the checkpoint is not quantized.
DEFERRED = {"mxfp4", "mxfp8"}


def effective_quant(arch: ModelArch, preset_quantization: str | None) -> tuple[Quant | None, str | None]:
    """(the quantization vLLM runs, why vLLM 0.32 would refuse the combination or None)."""
    asked = preset_quantization
    if arch.quant is not None:
        if arch.quant.method == "bitsandbytes":
            return arch.quant, ("the checkpoint is quantized with bitsandbytes, which vLLM 0.32 no longer "
                                "supports (its --quantization has no bitsandbytes)")
        if not asked or asked in PERMISSIVE or family(asked) == family(arch.quant.method):
            return arch.quant, None
        if asked in ONLINE and asked not in DEFERRED:
            return arch.quant, (f"quantization {asked} quantizes unquantized weights on load, and the "
                                f"checkpoint is already {arch.quant.method}: vLLM refuses the combination")
        return arch.quant, (f"quantization {asked} does not match the checkpoint's quantization_config "
                            f"({arch.quant.method}): vLLM refuses to load it")
    if not asked or asked == "online":
        return None, None
    if asked in ONLINE:
        return ONLINE[asked], None
    if asked in PERMISSIVE:
        return None, None
    return None, (f"quantization {asked} needs a checkpoint quantized that way, and {arch.source} has no "
                  "quantization_config: vLLM fails to load it")


# ------------------------------------------------------------------------------------ parameter groups


@dataclass(frozen=True)
class LayerParams:
    """One decoder layer's parameters, by how they are stored."""

    linear: int  # attention and dense-MLP (and shared-expert) projections: quantized when the model is
    experts: int  # routed experts' projections
    plain: int  # norms, biases, routers, sinks: always in the run dtype


def _attention(arch: ModelArch) -> tuple[int, int]:
    """(projection weights, biases and small tensors) of one attention block."""
    hidden, heads = arch.hidden_size, arch.num_attention_heads
    if arch.is_mla:
        rope = arch.qk_rope_head_dim or 0
        nope = arch.qk_nope_head_dim or arch.head_dim
        v_dim = arch.v_head_dim or arch.head_dim
        q_head = nope + rope
        rank = arch.kv_lora_rank or 0
        q_proj = (hidden * arch.q_lora_rank + arch.q_lora_rank * heads * q_head if arch.q_lora_rank
                  else hidden * heads * q_head)
        linear = q_proj + hidden * (rank + rope) + rank * heads * (nope + v_dim) + heads * v_dim * hidden
        return linear, rank + (arch.q_lora_rank or 0)
    q_size, kv_size = heads * arch.head_dim, arch.num_kv_heads * arch.head_dim
    linear = hidden * (q_size + 2 * kv_size) + q_size * hidden
    plain = (q_size + 2 * kv_size if arch.attention_bias else 0) + (2 * arch.head_dim if arch.qk_norm else 0)
    return linear, plain + (heads if arch.attention_sinks else 0)


def layer_params(arch: ModelArch, moe: bool, pad_experts: bool = False, tp: int = 1) -> LayerParams:
    """A decoder layer: MoE layers hold routed experts (padded as vLLM's MXFP4 kernels pad them) and shared
    experts; dense layers hold one MLP of intermediate_size."""
    hidden = arch.hidden_size
    attention, plain = _attention(arch)
    plain += (4 if arch.sandwich_norms else 2) * hidden  # input and post-attention norms (Gemma: 4)
    if not moe:
        return LayerParams(attention + 3 * hidden * arch.intermediate_size, 0, plain)
    expert_size = arch.moe_intermediate_size or arch.intermediate_size
    expert_hidden = hidden
    if pad_experts:  # Marlin/TRT-LLM MXFP4 MoE: each TP slice's intermediate to 128, hidden to 256
        # (fused_moe/oracle/mxfp4.py; other kernels pad less: within a few percent)
        expert_size = _round_up(-(-expert_size // tp), 128) * tp
        expert_hidden = _round_up(hidden, 256)
    experts = (arch.num_experts or 0) * 3 * expert_hidden * expert_size
    if arch.shared_expert_intermediate_size:
        shared = 3 * hidden * arch.shared_expert_intermediate_size
        plain += hidden  # Qwen2-MoE's shared_expert_gate
    else:
        shared = arch.num_shared_experts * 3 * hidden * (arch.moe_intermediate_size or arch.intermediate_size)
    router = (arch.num_experts or 0) * hidden
    if arch.expert_bias:
        plain += (arch.num_experts or 0) * (2 * expert_size + hidden) + (arch.num_experts or 0)
    return LayerParams(attention + shared, experts, plain + router)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def pp_partition(num_layers: int, pp: int) -> list[int]:
    """Layers per pipeline stage as vLLM 0.32 splits them (vllm/distributed/utils.py get_pp_indices): the
    remainder goes one each to the stages before the last, from the last-but-one backwards."""
    parts = [num_layers // pp] * pp
    for i in range(2, num_layers % pp + 2):
        parts[-i] += 1
    return parts


@dataclass(frozen=True)
class Weights:
    """Bytes of the whole model and of the largest worker."""

    total: int
    per_worker: int
    stages: list[int]  # bytes per pipeline stage (whole stage, before TP)
    quantized: int  # bytes of the quantized weights within total


def model_weights(arch: ModelArch, dtype: str = "bfloat16", tp: int = 1, pp: int = 1,
                  quantization: str | None = None) -> Weights:
    """Weights bytes vLLM loads, whole and per worker (the largest pipeline stage over TP)."""
    run = DTYPE_BYTES.get(dtype, 2)
    quant, _refusal = effective_quant(arch, quantization)
    per_weight = quant.bytes_per_weight() if quant else run
    linear_bytes = run if quant is None or quant.experts_only else per_weight
    expert_bytes = per_weight if quant else run
    pad = quant is not None and quant.method == "mxfp4"

    def layer_bytes(moe: bool) -> tuple[float, float]:
        p = layer_params(arch, moe, pad_experts=pad, tp=tp)
        quantized = p.linear * (linear_bytes if linear_bytes != run else 0) + p.experts * (
            expert_bytes if expert_bytes != run else 0)
        return p.linear * linear_bytes + p.experts * expert_bytes + p.plain * run, quantized

    dense_layers = arch.num_layers - arch.moe_layers
    embed = arch.vocab_size * arch.hidden_size * run
    lm_head = arch.vocab_size * arch.hidden_size * run
    vision = (arch.vision_params + arch.audio_params) * run
    parts = pp_partition(arch.num_layers, pp)
    stages, quantized_total, start = [], 0.0, 0
    for index, count in enumerate(parts):
        # Dense layers come first (DeepSeek's first_k_dense_replace); the rest are MoE layers.
        dense_here = max(0, min(dense_layers - start, count))
        dense_b, dense_q = layer_bytes(False)
        moe_b, moe_q = layer_bytes(True) if arch.moe_layers else (0.0, 0.0)
        stage = dense_here * dense_b + (count - dense_here) * moe_b
        quantized_total += dense_here * dense_q + (count - dense_here) * moe_q
        if index == 0:
            stage += embed + vision
        if index == pp - 1:
            stage += arch.hidden_size * run  # final norm
            if not arch.tie_word_embeddings or pp > 1:  # with PP the last stage holds its own LM head
                stage += lm_head
        stages.append(int(stage))
        start += count
    total: float = sum(stages) - (lm_head if arch.tie_word_embeddings and pp > 1 else 0)
    if arch.weights_bytes:
        total, stages, quantized_total = _scale_to_checkpoint(arch, quant, run, total, stages,
                                                              quantized_total)
    return Weights(total=int(total), per_worker=math.ceil(max(stages) / tp), stages=stages,
                   quantized=int(quantized_total))


def _scale_to_checkpoint(arch: ModelArch, quant: Quant | None, run: int, modelled: float, stages: list[int],
                         quantized: float) -> tuple[float, list[int], float]:
    """The safetensors size is the total (rescaled to the run dtype, or by online quantization); the model
    only says how it splits over stages."""
    assert arch.weights_bytes
    actual = float(arch.weights_bytes)
    checkpoint = DTYPE_BYTES.get(arch.default_dtype)
    if arch.quant is None:
        if checkpoint and checkpoint != run:
            actual = actual * run / checkpoint
        if quant is not None:  # online quantization shrinks what the parameter model says it shrinks
            unquantized = model_weights(arch.model_copy(update={"weights_bytes": None}), _dtype_name(run))
            actual = actual * modelled / unquantized.total if unquantized.total else actual
    factor = actual / modelled if modelled else 1.0
    return actual, [int(s * factor) for s in stages], quantized * factor


def _dtype_name(size: int) -> str:
    return {4: "float32", 2: "bfloat16", 1: "fp8"}.get(size, "bfloat16")
