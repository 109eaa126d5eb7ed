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

from vllm_launcher.memory.arch import ModelArch, layer_params
from vllm_launcher.memory.quant import DTYPE_BYTES, MXFP4_BLOCK, Quant

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
