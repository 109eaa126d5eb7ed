"""A model's architecture (`ModelArch`), never downloading anything.

Looked up, in order: a local model directory's config.json; the reserved demo model; the Hugging Face
cache (`$HF_HUB_CACHE`, `$HF_HOME/hub` or `~/.cache/huggingface/hub`); the built-in catalog
(`catalog.py`). Weights size comes from safetensors (the index's `total_size`, or the files' sizes) when
the files are at hand, else from the parameter count computed from the architecture.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from vllm_launcher import demo
from vllm_launcher.base.errors import ConfigError
from vllm_launcher.memory.catalog import catalog_entry
from vllm_launcher.memory.quant import Quant, quant_from_config

__all__ = ["ARCH_DEFAULTS", "ModelArch", "arch_from_config", "load_arch"]

# What config.json leaves out because transformers' config class has a default, and vLLM builds the model
# from that default: (model_type, key, value, source). Applied only where config.json omits the key.
ARCH_DEFAULTS: list[tuple[str, str, Any, str]] = [
    ("gemma", "tie_word_embeddings", True, "transformers GemmaConfig(tie_word_embeddings=True)"),
    ("gemma2", "tie_word_embeddings", True, "transformers Gemma2Config(tie_word_embeddings=True); "
     "google/gemma-2-9b-it's config.json omits it"),
    ("gemma2", "sliding_window", 4096, "transformers Gemma2Config(sliding_window=4096)"),
    ("gemma2", "sandwich_norms", True, "vLLM's Gemma2DecoderLayer: pre/post feed-forward norms too"),
    ("gemma3_text", "sandwich_norms", True, "vLLM's Gemma3DecoderLayer: pre/post feed-forward norms too"),
    ("gemma3_text", "qk_norm", True, "vLLM's Gemma3Attention: q_norm and k_norm per head"),
    ("gemma3", "sandwich_norms", True, "vLLM's Gemma3DecoderLayer: pre/post feed-forward norms too"),
    ("gemma3", "qk_norm", True, "vLLM's Gemma3Attention: q_norm and k_norm per head"),
    ("gemma3_text", "tie_word_embeddings", True, "transformers Gemma3TextConfig(tie_word_embeddings=True)"),
    ("gemma3_text", "sliding_window_pattern", 6, "transformers Gemma3TextConfig: 5 local layers, 1 global"),
    ("gemma3_text", "sliding_window", 4096, "transformers Gemma3TextConfig(sliding_window=4096)"),
    ("gemma3", "tie_word_embeddings", True, "transformers Gemma3Config: the text model's tied embeddings"),
    ("gemma3", "sliding_window_pattern", 6, "transformers Gemma3TextConfig: 5 local layers, 1 global"),
    ("qwen2", "attention_bias", True, "vLLM's Qwen2Attention builds q/k/v with bias=True"),
    ("qwen2_moe", "attention_bias", True, "vLLM's Qwen2MoeAttention builds q/k/v with bias=True"),
    ("qwen3", "qk_norm", True, "vLLM's Qwen3Attention: q_norm and k_norm per head"),
    ("qwen3_moe", "qk_norm", True, "vLLM's Qwen3MoeAttention: q_norm and k_norm per head"),
    ("llama4_text", "n_shared_experts", 1, "vLLM's Llama4MoE: one shared expert of intermediate_size"),
    ("llama4", "n_shared_experts", 1, "vLLM's Llama4MoE: one shared expert of intermediate_size"),
    ("gpt_oss", "attention_bias", True, "vLLM's gpt_oss.py: biased q/k/v/o, attention sinks, expert biases"),
    ("gpt_oss", "attention_sinks", True, "vLLM's gpt_oss.py OAIAttention(sinks)"),
    ("gpt_oss", "expert_bias", True, "vLLM's gpt_oss.py MLPBlock(bias=True)"),
    ("mistral", "sliding_window", 4096, "transformers MistralConfig(sliding_window=4096) (v0.1; later "
     "checkpoints say null)"),
]


class ModelArch(BaseModel):
    """What the memory estimate needs to know about a model (names follow Hugging Face config.json)."""

    architecture: str = ""
    model_type: str = ""
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    # Mixture of experts: routed experts, experts per token, per-expert MLP size, shared experts,
    # and how many layers hold experts (the others are dense: DeepSeek's first_k_dense_replace, Qwen's
    # mlp_only_layers and decoder_sparse_step, Llama 4's interleave_moe_layer_step).
    num_experts: int | None = None
    num_experts_per_tok: int | None = None
    moe_intermediate_size: int | None = None
    num_shared_experts: int = 0
    shared_expert_intermediate_size: int | None = None
    dense_layers: int = 0
    moe_layers: int = 0
    qk_norm: bool = False
    sandwich_norms: bool = False  # Gemma 2/3: norms before and after the MLP as well
    attention_sinks: bool = False
    expert_bias: bool = False
    vision_params: int = 0  # a multimodal checkpoint's vision tower and projector (run dtype)
    audio_params: int = 0  # an audio tower (Whisper-style encoder) and its projector (run dtype)
    # The multimodal encoder as vLLM's profile runs it (gpu_model_runner.profile_run): a width and MLP size,
    # the patches (or audio frames) behind one language-model token, and the tokens of the largest item.
    encoder_hidden_size: int = 0
    encoder_intermediate_size: int = 0
    encoder_patches_per_token: int = 1
    encoder_tokens_per_item: int = 0  # 0: no encoder to profile
    # Multi-head latent attention (DeepSeek-V2/V3): the KV cache keeps kv_lora_rank + qk_rope_head_dim.
    kv_lora_rank: int | None = None
    q_lora_rank: int | None = None
    qk_rope_head_dim: int | None = None
    qk_nope_head_dim: int | None = None
    v_head_dim: int | None = None
    # Sliding-window attention: the window (tokens) and how many layers use it.
    sliding_window: int | None = None
    sliding_window_layers: int = 0
    param_count: int
    default_dtype: str = "bfloat16"
    quant: Quant | None = None  # the checkpoint's quantization_config
    weights_bytes: int | None = None  # from safetensors when known
    source: str
    defaults_applied: list[str] = []  # ARCH_DEFAULTS entries this config relied on

    @property
    def quant_bits(self) -> int | None:
        return self.quant.bits if self.quant else None

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank is not None

    @property
    def is_moe(self) -> bool:
        return bool(self.num_experts)


# ---------------------------------------------------------------------------------- config.json


def _get(config: dict, *names: str, default: Any = None) -> Any:
    for name in names:
        if config.get(name) is not None:
            return config[name]
    return default


def _count(value: Any, name: str, limit: int) -> int:
    """A whole number from config.json, at most LIMIT (a 10**30-layer config would never finish)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    if value > limit:
        raise ValueError(f"{name} {value:g} is implausibly large (at most {limit:g})")
    return int(value)


def _sliding_window_layers(config: dict, num_layers: int, window: int | None) -> int:
    """How many layers attend within the sliding window (the others attend to everything)."""
    if not window or config.get("use_sliding_window") is False:
        return 0
    layer_types = config.get("layer_types")
    if isinstance(layer_types, list):
        return sum(1 for t in layer_types if t == "sliding_attention")
    model_type = config.get("model_type", "")
    if model_type == "gemma2":  # layers 0, 2, 4, ... slide (Gemma2Attention: not layer_idx % 2)
        return (num_layers + 1) // 2
    pattern = config.get("sliding_window_pattern")
    if isinstance(pattern, int) and pattern > 1:  # Gemma 3: every pattern-th layer is global
        return num_layers - num_layers // pattern
    if model_type in ("qwen2", "qwen2_moe") and config.get("use_sliding_window"):
        return max(0, num_layers - int(config.get("max_window_layers", num_layers)))
    return num_layers


def _moe_layers(config: dict, num_layers: int) -> int:
    """How many layers hold experts."""
    dense_first = int(_get(config, "first_k_dense_replace", default=0) or 0)
    only_mlp = {i for i in config.get("mlp_only_layers") or [] if isinstance(i, int)}
    step = int(_get(config, "decoder_sparse_step", "interleave_moe_layer_step", default=1) or 1)
    return sum(1 for i in range(num_layers)
               if i >= dense_first and i not in only_mlp and (i + 1) % max(step, 1) == 0)


def _vision_params(config: dict, text_hidden: int) -> int:
    """A vision tower's parameters from vision_config: ViT blocks, patch embedding and the projector into
    the language model (a two-layer MLP over merged patches, as Qwen-VL, LLaVA and Gemma 3 use)."""
    vision = config.get("vision_config")
    if not isinstance(vision, dict):
        return 0
    hidden = _get(vision, "hidden_size", "embed_dim", "width")
    layers = _get(vision, "depth", "num_hidden_layers", "num_layers")
    if not isinstance(hidden, int) or not isinstance(layers, int):
        return 0
    mlp = _get(vision, "intermediate_size", default=None) or int(float(_get(vision, "mlp_ratio", default=4))
                                                              * hidden)
    patch = int(_get(vision, "patch_size", default=14))
    temporal = int(_get(vision, "temporal_patch_size", default=1))
    channels = int(_get(vision, "in_channels", "num_channels", "in_chans", default=3))
    merged = hidden * int(_get(vision, "spatial_merge_size", default=1)) ** 2
    blocks = layers * (4 * hidden * hidden + 2 * hidden * int(mlp) + 6 * hidden)
    return blocks + channels * patch * patch * temporal * hidden + merged * merged + merged * text_hidden


def _audio_params(config: dict, text_hidden: int) -> int:
    """An audio tower's parameters from audio_config (Whisper-style, as Qwen2-Audio and Qwen2.5-Omni use):
    two convolutions over the mel bins, transformer blocks, and the projector into the language model."""
    audio = config.get("audio_config")
    if not isinstance(audio, dict):
        return 0
    width = _get(audio, "d_model", "hidden_size")
    layers = _get(audio, "encoder_layers", "num_hidden_layers")
    if not isinstance(width, int) or not isinstance(layers, int):
        return 0
    ffn = int(_get(audio, "encoder_ffn_dim", "intermediate_size", default=4 * width))
    mels = int(_get(audio, "num_mel_bins", default=128))
    blocks = layers * (4 * width * width + 2 * width * ffn + 9 * width)
    return mels * width * 3 + width * width * 3 + blocks + width * text_hidden


# What vLLM's processors make of the largest item when config.json does not say (their defaults):
# Qwen2-VL/2.5-VL max_pixels 12845056 (16384 tokens after the 2x2 merge), Llama 4 16 tiles plus a global
# one, a Whisper-style encoder's 30 s window (1500 frames, pooled 2:1).
QWEN_VL_MAX_PIXELS = 12845056
LLAMA4_MAX_TILES = 16
AUDIO_FRAMES, AUDIO_POOL = 1500, 2


def _encoder_profile(config: dict) -> dict[str, int]:
    """The encoder fields of ModelArch: width, MLP size, patches per language-model token and the tokens of
    the largest item, for a vision tower (preferred) or an audio tower; {} when there is neither."""
    vision, audio = config.get("vision_config"), config.get("audio_config")
    if isinstance(vision, dict) and _vision_params(config, 1):
        hidden = int(_get(vision, "hidden_size", "embed_dim", "width"))
        ratio = float(_get(vision, "mlp_ratio", default=4))
        mlp = int(_get(vision, "intermediate_size", default=None) or ratio * hidden)
        patch = int(_get(vision, "patch_size", default=14))
        grid = (int(_get(vision, "image_size", default=336)) // max(1, patch)) ** 2
        merge = int(_get(vision, "spatial_merge_size", default=1))
        shuffle = _get(vision, "pixel_shuffle_ratio")
        if isinstance(shuffle, (int, float)) and 0 < shuffle < 1:  # Llama 4: tiles of pixel-shuffled patches
            per_token = round(1 / (shuffle * shuffle))
            tokens = (LLAMA4_MAX_TILES + 1) * grid // per_token
        elif merge > 1:  # Qwen2-VL family: dynamic resolution up to max_pixels
            per_token = merge * merge
            tokens = QWEN_VL_MAX_PIXELS // (patch * patch * per_token)
        elif isinstance(config.get("mm_tokens_per_image"), int) and config["mm_tokens_per_image"] > 0:
            tokens = int(config["mm_tokens_per_image"])  # Gemma 3: pooled to a fixed count
            per_token = max(1, grid // tokens)
        else:
            per_token, tokens = 1, grid
        return {"encoder_hidden_size": hidden, "encoder_intermediate_size": mlp,
                "encoder_patches_per_token": per_token, "encoder_tokens_per_item": tokens}
    if isinstance(audio, dict) and _audio_params(config, 1):
        width = int(_get(audio, "d_model", "hidden_size"))
        return {"encoder_hidden_size": width,
                "encoder_intermediate_size": int(_get(audio, "encoder_ffn_dim", "intermediate_size",
                                                      default=4 * width)),
                "encoder_patches_per_token": AUDIO_POOL,
                "encoder_tokens_per_item": AUDIO_FRAMES // AUDIO_POOL}
    return {}


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


def count_params(arch: ModelArch) -> int:
    """Parameters computed from the architecture (embeddings, attention, MLP or experts, norms, vision)."""
    embed = arch.vocab_size * arch.hidden_size * (1 if arch.tie_word_embeddings else 2)
    dense, moe = layer_params(arch, moe=False), layer_params(arch, moe=True)
    per_dense, per_moe = dense.linear + dense.experts + dense.plain, moe.linear + moe.experts + moe.plain
    layers = (arch.num_layers - arch.moe_layers) * per_dense + arch.moe_layers * per_moe
    return embed + layers + arch.hidden_size + arch.vision_params + arch.audio_params


def _with_defaults(config: dict) -> tuple[dict, list[str]]:
    """config.json plus ARCH_DEFAULTS for the keys it leaves out, and which entries were used."""
    model_type = str(config.get("model_type", ""))
    applied = []
    config = dict(config)
    for kind, key, value, source in ARCH_DEFAULTS:
        if kind == model_type and key not in config:
            config[key] = value
            applied.append(f"{key}={value} ({source})")
    return config, applied


def arch_from_config(config: dict, source: str, param_count: int | None = None) -> ModelArch:
    """A Hugging Face config.json (as a dict) → ModelArch. Raises ValueError on a config we cannot read
    (a value of the wrong type or range included: config.json is user input)."""
    try:
        arch = _arch_from_config(config, source, param_count)
    except (TypeError, AttributeError, ArithmeticError, IndexError, KeyError) as exc:
        raise ValueError(f"config.json holds a value of the wrong type or range ({type(exc).__name__}: "
                         f"{str(exc)[:200]})") from None
    positive = ("num_layers", "num_attention_heads", "num_kv_heads", "hidden_size", "head_dim", "vocab_size",
                "max_position_embeddings")
    bad = [name for name in positive if getattr(arch, name) <= 0]
    bad += [name for name, value in arch
            if isinstance(value, int) and not isinstance(value, bool) and value < 0 and name not in positive]
    if bad:
        raise ValueError(f"config.json: {', '.join(bad)} must be positive (a count or a size)")
    huge = [name for name, value in arch if isinstance(value, int) and not isinstance(value, bool)
            and value > (10**15 if name in ("param_count", "vision_params", "weights_bytes") else 10**9)]
    if huge:
        raise ValueError(f"config.json: {', '.join(huge)} implausibly large")
    return arch


def _arch_from_config(config: dict, source: str, param_count: int | None = None) -> ModelArch:
    if not any(k in config for k in ("num_hidden_layers", "n_layer", "num_layers")) and isinstance(
            config.get("text_config"), dict):
        # Multimodal checkpoints keep the language model's numbers under text_config.
        config = {**config, **config["text_config"]}
    config, applied = _with_defaults(config)
    if _get(config, "hidden_size", "n_embd", "d_model") is None or _get(
            config, "num_hidden_layers", "n_layer", "num_layers") is None or _get(
            config, "num_attention_heads", "n_head") is None:
        raise ValueError("config.json lacks hidden_size / num_hidden_layers / num_attention_heads")
    hidden = _count(_get(config, "hidden_size", "n_embd", "d_model"), "hidden_size", 10**6)
    layers = _count(_get(config, "num_hidden_layers", "n_layer", "num_layers"), "num_hidden_layers", 10**5)
    heads = _count(_get(config, "num_attention_heads", "n_head"), "num_attention_heads", 10**5)
    kv_heads = _count(_get(config, "num_key_value_heads", "num_kv_heads", "multi_query_group_num",
                           default=heads), "num_key_value_heads", 10**5)
    head_dim = _count(_get(config, "head_dim", default=hidden // heads if heads else 0), "head_dim", 10**5)
    window = _get(config, "sliding_window")
    window = int(window) if isinstance(window, int) else None
    num_experts = _get(config, "n_routed_experts", "num_local_experts", "num_experts")
    architectures = config.get("architectures") or [""]
    intermediate = _count(_get(config, "intermediate_size_mlp", "intermediate_size", "n_inner", "ffn_dim",
                               default=4 * hidden), "intermediate_size", 10**7)
    # Llama 4 names the expert size intermediate_size and the dense MLP's intermediate_size_mlp.
    moe_intermediate = _get(config, "moe_intermediate_size") or (
        config.get("intermediate_size") if "intermediate_size_mlp" in config else None)
    sliding_layers = _sliding_window_layers(config, layers, window)
    moe_layers = _moe_layers(config, layers) if num_experts else 0
    arch = ModelArch(
        architecture=str(architectures[0]),
        model_type=str(config.get("model_type", "")),
        num_layers=layers,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        hidden_size=hidden,
        intermediate_size=intermediate,
        vocab_size=_count(_get(config, "vocab_size", "padded_vocab_size", default=32000), "vocab_size",
                          10**8),
        max_position_embeddings=_count(_get(config, "max_position_embeddings", "n_positions", "seq_length",
                                            default=2048), "max_position_embeddings", 10**9),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        attention_bias=bool(config.get("attention_bias", False)),
        num_experts=int(num_experts) if num_experts else None,
        num_experts_per_tok=_get(config, "num_experts_per_tok", "moe_topk", "experts_per_token"),
        moe_intermediate_size=moe_intermediate,
        num_shared_experts=int(_get(config, "n_shared_experts", "num_shared_experts", default=0) or 0),
        shared_expert_intermediate_size=_get(config, "shared_expert_intermediate_size") or None,
        dense_layers=layers - moe_layers if num_experts else 0,
        moe_layers=moe_layers,
        qk_norm=bool(config.get("qk_norm", False)),
        sandwich_norms=bool(config.get("sandwich_norms", False)),
        attention_sinks=bool(config.get("attention_sinks", False)),
        expert_bias=bool(config.get("expert_bias", False)),
        kv_lora_rank=_get(config, "kv_lora_rank"),
        q_lora_rank=_get(config, "q_lora_rank"),
        qk_rope_head_dim=_get(config, "qk_rope_head_dim"),
        qk_nope_head_dim=_get(config, "qk_nope_head_dim"),
        v_head_dim=_get(config, "v_head_dim"),
        sliding_window=window if sliding_layers else None,
        sliding_window_layers=sliding_layers,
        param_count=0,
        default_dtype=str(_get(config, "torch_dtype", "dtype", default="bfloat16")),
        quant=quant_from_config(config),
        source=source,
        defaults_applied=applied,
    )
    arch = arch.model_copy(update={"vision_params": _vision_params(config, hidden),
                                   "audio_params": _audio_params(config, hidden), **_encoder_profile(config)})
    return arch.model_copy(update={"param_count": param_count or count_params(arch)})


# ------------------------------------------------------------------------------------------ finding


def safetensors_bytes(directory: Path) -> int | None:
    """Total weights size from `model.safetensors.index.json`, else the sizes of the .safetensors files."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            total = json.loads(index.read_text(encoding="utf-8")).get("metadata", {}).get("total_size")
            if isinstance(total, int) and total > 0:
                return total
        except (OSError, ValueError):
            pass
    files = list(directory.glob("*.safetensors"))
    if not files:
        return None
    # Headers are a few KiB against GiBs of tensors; os.stat follows the HF cache's symlinks to blobs.
    return sum(os.stat(f).st_size for f in files)


def _from_directory(directory: Path, source: str) -> ModelArch:
    from vllm_launcher.base.files import read_user_file

    config_path = directory / "config.json"
    if not os.path.lexists(config_path):
        raise ConfigError("no config.json in this model directory", source=directory)
    try:
        config = json.loads(read_user_file(config_path, max_bytes=16 << 20, what="cannot read config.json"))
    except ValueError as exc:
        raise ConfigError(f"cannot read config.json: {exc}", source=config_path) from None
    if not isinstance(config, dict):
        raise ConfigError("config.json is not a JSON object", source=config_path)
    try:
        arch = arch_from_config(config, source=source)
    except ValueError as exc:
        raise ConfigError(str(exc), source=config_path) from None
    return arch.model_copy(update={"weights_bytes": safetensors_bytes(directory)})


def hf_cache_dirs() -> list[Path]:
    """Where the Hugging Face hub cache may be, in the order huggingface_hub looks."""
    found = []
    if os.environ.get("HF_HUB_CACHE"):
        found.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        found.append(Path(os.environ["HF_HOME"]) / "hub")
    xdg = os.environ.get("XDG_CACHE_HOME")
    found.append((Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub")
    return found


def find_in_hf_cache(model: str) -> Path | None:
    """The snapshot directory of `ORG/NAME` holding a config.json: the one `refs/main` names, else the
    newest."""
    if model.count("/") != 1:
        return None
    folder = "models--" + model.replace("/", "--")
    for cache in hf_cache_dirs():
        repo = cache / folder
        snapshots = repo / "snapshots"
        if not snapshots.is_dir():
            continue
        try:
            main = (repo / "refs" / "main").read_text().strip()
            if (snapshots / main / "config.json").is_file():
                return snapshots / main
        except OSError:
            pass
        candidates = [p.parent for p in snapshots.glob("*/config.json")]
        if candidates:
            return max(candidates, key=lambda p: p.stat().st_mtime)
    return None


def _demo_dir(model: str) -> Path | None:
    """The built demo model's directory, when it was built (else the catalog's entry describes it)."""
    if not demo.is_demo_model(model):
        return None
    directory = demo.demo_model_dir()
    return directory if (directory / "config.json").is_file() else None


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", ".", "~")) or os.sep + os.sep in model or model.count("/") > 1


def load_arch(model: str) -> ModelArch:
    """A model id or local path → its architecture, without downloading. Raises ConfigError if unknown
    (bad input: the user names a model we cannot read, exit 2)."""
    local = Path(model).expanduser()
    if local.is_dir():
        return _from_directory(local, source=f"{local}/config.json")
    if _looks_like_path(model):
        raise ConfigError("no such model directory", source=model, field="model")
    demo_dir = _demo_dir(model)
    if demo_dir is not None:
        return _from_directory(demo_dir, source=f"demo model {demo_dir}/config.json")
    snapshot = find_in_hf_cache(model)
    if snapshot is not None:
        return _from_directory(snapshot, source=f"Hugging Face cache {snapshot}/config.json")
    arch = catalog_arch(model)
    if arch is not None:
        return arch
    raise ConfigError(
        f"unknown model {model!r}: not a local directory, not in the Hugging Face cache "
        f"({', '.join(str(p) for p in hf_cache_dirs())}), not in the built-in catalog. Give a local model "
        f"directory holding its config.json (e.g. --model /path/to/model), or download it once with "
        f"`hf download {model} config.json` (or `huggingface-cli download`) so the cache has it"
    )


def catalog_arch(model: str) -> ModelArch | None:
    """The built-in catalog's architecture for a model id (case-insensitive), or None."""
    entry = catalog_entry(model)
    if entry is None:
        return None
    return arch_from_config(entry["config"], source=f"built-in catalog: {entry['source']}")
