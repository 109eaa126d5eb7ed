"""A model's architecture (`ModelArch`), never downloading anything.

Looked up, in order: a local model directory's config.json; the reserved demo model; the Hugging Face
cache (`$HF_HUB_CACHE`, `$HF_HOME/hub` or `~/.cache/huggingface/hub`); the built-in catalog
(`catalog.py`). Weights size comes from safetensors (the index's `total_size`, or the files' sizes) when
the files are at hand, else from the parameter count computed from the architecture.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from vllm_launcher import demo
from vllm_launcher.catalog import catalog_entry
from vllm_launcher.errors import ConfigError

DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2, "fp8": 1, "float8": 1}


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
    # and how many leading layers stay dense (DeepSeek's first_k_dense_replace).
    num_experts: int | None = None
    num_experts_per_tok: int | None = None
    moe_intermediate_size: int | None = None
    num_shared_experts: int = 0
    shared_expert_intermediate_size: int | None = None
    dense_layers: int = 0
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
    quant_bits: int | None = None
    weights_bytes: int | None = None  # from safetensors when known
    source: str

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


def _quant_bits(config: dict) -> int | None:
    quant = config.get("quantization_config")
    if not isinstance(quant, dict):
        return None
    if isinstance(quant.get("bits"), int):
        return quant["bits"]
    if quant.get("load_in_4bit"):
        return 4
    if quant.get("load_in_8bit"):
        return 8
    method = str(quant.get("quant_method", "")).lower()
    if "fp8" in method:
        return 8
    for group in (quant.get("config_groups") or {}).values():  # compressed-tensors
        bits = (group.get("weights") or {}).get("num_bits") if isinstance(group, dict) else None
        if isinstance(bits, int):
            return bits
    if method in ("awq", "gptq", "marlin", "bitsandbytes"):
        return 4
    return None


def _sliding_window_layers(config: dict, num_layers: int, window: int | None) -> int:
    if not window or config.get("use_sliding_window") is False:
        return 0
    layer_types = config.get("layer_types")
    if isinstance(layer_types, list):
        return sum(1 for t in layer_types if t == "sliding_attention")
    model_type = config.get("model_type", "")
    if model_type == "gemma2":
        return num_layers // 2
    if model_type in ("qwen2", "qwen2_moe") and config.get("use_sliding_window"):
        return max(0, num_layers - int(config.get("max_window_layers", num_layers)))
    return num_layers


def count_params(arch: ModelArch) -> int:
    """Parameters computed from the architecture (embeddings, attention, MLP or experts, norms)."""
    hidden, layers = arch.hidden_size, arch.num_layers
    embed = arch.vocab_size * hidden * (1 if arch.tie_word_embeddings else 2)
    if arch.is_mla:
        rope = arch.qk_rope_head_dim or 0
        nope = arch.qk_nope_head_dim or arch.head_dim
        v_dim = arch.v_head_dim or arch.head_dim
        q_head = nope + rope
        heads = arch.num_attention_heads
        if arch.q_lora_rank:
            q_proj = hidden * arch.q_lora_rank + arch.q_lora_rank + arch.q_lora_rank * heads * q_head
        else:
            q_proj = hidden * heads * q_head
        kv_rank = arch.kv_lora_rank or 0
        attention = (q_proj + hidden * (kv_rank + rope) + kv_rank + kv_rank * heads * (nope + v_dim)
                     + heads * v_dim * hidden)
    else:
        q_size = arch.num_attention_heads * arch.head_dim
        kv_size = arch.num_kv_heads * arch.head_dim
        attention = hidden * (q_size + 2 * kv_size) + q_size * hidden
        if arch.attention_bias:
            attention += q_size + 2 * kv_size
    dense_mlp = 3 * hidden * arch.intermediate_size
    if arch.is_moe:
        expert = 3 * hidden * (arch.moe_intermediate_size or arch.intermediate_size)
        shared = (3 * hidden * arch.shared_expert_intermediate_size if arch.shared_expert_intermediate_size
                  else arch.num_shared_experts * expert)
        moe_mlp = (arch.num_experts or 0) * expert + shared + (arch.num_experts or 0) * hidden
        mlp_total = arch.dense_layers * dense_mlp + (layers - arch.dense_layers) * moe_mlp
    else:
        mlp_total = layers * dense_mlp
    return embed + layers * (attention + 2 * hidden) + mlp_total + hidden


def arch_from_config(config: dict, source: str, param_count: int | None = None) -> ModelArch:
    """A Hugging Face config.json (as a dict) → ModelArch. Raises ValueError on a config we cannot read."""
    if not any(k in config for k in ("num_hidden_layers", "n_layer", "num_layers")) and isinstance(
            config.get("text_config"), dict):
        # Multimodal checkpoints keep the language model's numbers under text_config.
        config = {**config, **config["text_config"]}
    try:
        hidden = int(_get(config, "hidden_size", "n_embd", "d_model"))
        layers = int(_get(config, "num_hidden_layers", "n_layer", "num_layers"))
        heads = int(_get(config, "num_attention_heads", "n_head"))
    except (TypeError, ValueError):
        raise ValueError("config.json lacks hidden_size / num_hidden_layers / num_attention_heads") from None
    kv_heads = int(_get(config, "num_key_value_heads", "num_kv_heads", "multi_query_group_num",
                        default=heads))
    head_dim = int(_get(config, "head_dim", default=hidden // heads))
    window = _get(config, "sliding_window")
    window = int(window) if isinstance(window, int) else None
    num_experts = _get(config, "n_routed_experts", "num_local_experts", "num_experts")
    architectures = config.get("architectures") or [""]
    arch = ModelArch(
        architecture=str(architectures[0]),
        model_type=str(config.get("model_type", "")),
        num_layers=layers,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        hidden_size=hidden,
        intermediate_size=int(_get(config, "intermediate_size", "n_inner", "ffn_dim", default=4 * hidden)),
        vocab_size=int(_get(config, "vocab_size", "padded_vocab_size", default=32000)),
        max_position_embeddings=int(_get(config, "max_position_embeddings", "n_positions", "seq_length",
                                         default=2048)),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        # Qwen2 has q/k/v biases without saying so in config.json.
        attention_bias=bool(config.get("attention_bias", config.get("model_type") == "qwen2")),
        num_experts=int(num_experts) if num_experts else None,
        num_experts_per_tok=_get(config, "num_experts_per_tok", "moe_topk"),
        moe_intermediate_size=_get(config, "moe_intermediate_size"),
        num_shared_experts=int(_get(config, "n_shared_experts", default=0) or 0),
        shared_expert_intermediate_size=_get(config, "shared_expert_intermediate_size"),
        dense_layers=int(_get(config, "first_k_dense_replace", default=0) or 0),
        kv_lora_rank=_get(config, "kv_lora_rank"),
        q_lora_rank=_get(config, "q_lora_rank"),
        qk_rope_head_dim=_get(config, "qk_rope_head_dim"),
        qk_nope_head_dim=_get(config, "qk_nope_head_dim"),
        v_head_dim=_get(config, "v_head_dim"),
        sliding_window=window if _sliding_window_layers(config, layers, window) else None,
        sliding_window_layers=_sliding_window_layers(config, layers, window),
        param_count=0,
        default_dtype=str(_get(config, "torch_dtype", "dtype", default="bfloat16")),
        quant_bits=_quant_bits(config),
        source=source,
    )
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
    from vllm_launcher.files import read_user_file

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
