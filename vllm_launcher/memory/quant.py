"""How the quantized linear layers of a checkpoint are stored: the bytes of each weight with its scales and
zeros, read from config.json's `quantization_config`. Pure; shared by the architecture and the weights.
"""

from __future__ import annotations

from pydantic import BaseModel

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
