"""Build a TINY random-weight checkpoint of a given architecture family (no downloads).

    python tests/tiny_families.py --family NAME --out DIR --tokenizer-from D [--arch '{"head_dim": 64}']

Families: mixtral, qwen2_moe, qwen3_moe, gemma2, gemma3, deepseek_v2, mistral_sw, qwen2_sw, qwen2 (qwen2_sw:
vLLM 0.32 refuses a window on only some Qwen2 layers). Written for tests/test_estimate_families.py.

Writes config.json, model.safetensors (transformers AutoModelForCausalLM.from_config + save_pretrained,
safe_serialization, float32), generation_config.json and the tokenizer files. The tokenizer is the one
vllm_launcher/demo/tiny_model.py trains (vocab 4100): it is copied from --tokenizer-from (a
directory built by tiny_model.py), built there first if that directory is missing. vocab_size in every
config is set to the tokenizer's vocabulary size. Fixed seed: same family + arch -> same weights.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

SEED = 1234
TINY_MODEL = str(Path(__file__).resolve().parent.parent / "vllm_launcher" / "demo" / "tiny_model.py")
DEFAULT_TOKENIZER_DIR = ""  # the tests pass --tokenizer-from
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")

# Common base: hidden 128, 4 query heads of 32 (vLLM CPU attention needs head size >= 32), 2 KV heads.
_COMMON: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "hidden_act": "silu",
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
    "initializer_range": 0.02,
    "attention_dropout": 0.0,
    "use_cache": True,
}

FAMILIES: dict[str, dict[str, Any]] = {
    "qwen2": {
        **_COMMON,
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "sliding_window": None, "use_sliding_window": False, "max_window_layers": 2,
        "tie_word_embeddings": True,
    },
    # Qwen2 with use_sliding_window: in HF, layers with index >= max_window_layers use the window.
    "qwen2_sw": {
        **_COMMON,
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "num_hidden_layers": 4, "sliding_window": 256, "use_sliding_window": True, "max_window_layers": 2,
        "tie_word_embeddings": True,
    },
    # Mistral with a sliding window on every layer.
    "mistral_sw": {
        **_COMMON,
        "architectures": ["MistralForCausalLM"], "model_type": "mistral",
        "sliding_window": 256,
    },
    "mixtral": {
        **_COMMON,
        "architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
        "num_local_experts": 4, "num_experts_per_tok": 2, "sliding_window": None,
        "router_aux_loss_coef": 0.001, "output_router_logits": False,
    },
    "qwen2_moe": {
        **_COMMON,
        "architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe",
        "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 64,
        "shared_expert_intermediate_size": 128, "decoder_sparse_step": 1, "mlp_only_layers": [],
        "norm_topk_prob": False, "sliding_window": None, "use_sliding_window": False,
        "max_window_layers": 2, "output_router_logits": False, "router_aux_loss_coef": 0.001,
        "qkv_bias": True,
    },
    "qwen3_moe": {
        **_COMMON,
        "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
        "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 64,
        "decoder_sparse_step": 1, "mlp_only_layers": [], "norm_topk_prob": True,
        "sliding_window": None, "use_sliding_window": False, "max_window_layers": 2,
        "attention_bias": False, "output_router_logits": False, "router_aux_loss_coef": 0.001,
    },
    # Gemma2: layer_types alternate sliding/full (even layers slide in HF: (i+1) % 2 != 0 -> sliding).
    "gemma2": {
        **_COMMON,
        "architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2",
        "num_hidden_layers": 4, "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh",
        "query_pre_attn_scalar": 32, "sliding_window": 256,
        "final_logit_softcapping": 30.0, "attn_logit_softcapping": 50.0,
        "tie_word_embeddings": True, "attention_bias": False,
    },
    # Gemma3 text-only: 5 sliding : 1 full by default; with 4 layers and pattern 2 -> alternate.
    "gemma3": {
        **_COMMON,
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
        "num_hidden_layers": 4, "hidden_activation": "gelu_pytorch_tanh",
        "query_pre_attn_scalar": 32, "sliding_window": 256, "sliding_window_pattern": 2,
        "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
        "rope_local_base_freq": 10000.0, "final_logit_softcapping": None, "attn_logit_softcapping": None,
        "tie_word_embeddings": True, "attention_bias": False,
    },
    # DeepSeek-V2 with MLA: latent kv_lora_rank + rope part per token; MoE with shared experts,
    # first layer dense. kv_lora_rank + qk_rope_head_dim must be 576 for vLLM's CPU MLA kernel (a latent of
    # 96 starts but fails at the first request: "Head dimension 96 is not supported by MLA").
    "deepseek_v2": {
        **_COMMON,
        "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2",
        "num_hidden_layers": 3, "num_key_value_heads": 4,
        "q_lora_rank": None, "kv_lora_rank": 512, "qk_rope_head_dim": 64, "qk_nope_head_dim": 32,
        "v_head_dim": 32, "head_dim": 32,
        "n_routed_experts": 4, "n_shared_experts": 1, "num_experts_per_tok": 2,
        "moe_intermediate_size": 64, "first_k_dense_replace": 1, "moe_layer_freq": 1,
        "n_group": 1, "topk_group": 1, "topk_method": "greedy", "routed_scaling_factor": 1.0,
        "scoring_func": "softmax", "norm_topk_prob": False, "aux_loss_alpha": 0.001, "seq_aux": True,
        "attention_bias": False, "rope_scaling": None,
    },
}


def _ensure_tokenizer_dir(tok_dir: Path) -> Path:
    if not all((tok_dir / f).is_file() for f in (*TOKENIZER_FILES, "config.json")):
        subprocess.run([sys.executable, TINY_MODEL, "--out", str(tok_dir)], check=True)
    return tok_dir


def make_config(family: str, overrides: dict | None, tok_dir: Path) -> dict:
    if family not in FAMILIES:
        raise SystemExit(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    base_cfg = json.loads((tok_dir / "config.json").read_text())
    cfg = {**FAMILIES[family], **(overrides or {})}
    cfg["vocab_size"] = base_cfg["vocab_size"]
    cfg["bos_token_id"] = base_cfg["bos_token_id"]
    cfg["eos_token_id"] = base_cfg["eos_token_id"]
    cfg["pad_token_id"] = base_cfg["bos_token_id"]
    return cfg


def build(family: str, out: Path, overrides: dict | None, tok_dir: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    tok_dir = _ensure_tokenizer_dir(tok_dir)
    cfg_dict = make_config(family, overrides, tok_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_type = cfg_dict["model_type"]
    kwargs = {k: v for k, v in cfg_dict.items() if k != "model_type"}
    config = AutoConfig.for_model(model_type, **kwargs)
    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(str(out), safe_serialization=True)
    # Keep exactly the requested keys visible in config.json too (save_pretrained may drop/rename some,
    # e.g. sliding_window_pattern in newer transformers). Merge: saved config wins except for keys the
    # saved config lacks.
    saved = json.loads((out / "config.json").read_text())
    for k, v in cfg_dict.items():
        saved.setdefault(k, v)
    saved["architectures"] = cfg_dict["architectures"]
    (out / "config.json").write_text(json.dumps(saved, indent=2) + "\n")
    for f in TOKENIZER_FILES:
        shutil.copy(tok_dir / f, out / f)
    shutil.copy(tok_dir / "generation_config.json", out / "generation_config.json")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", required=True, choices=sorted(FAMILIES))
    p.add_argument("--out", required=True)
    p.add_argument("--arch", default=None, help="JSON object of config overrides")
    p.add_argument("--tokenizer-from", default=DEFAULT_TOKENIZER_DIR)
    a = p.parse_args(argv)
    overrides = json.loads(a.arch) if a.arch else None
    if overrides is not None and not isinstance(overrides, dict):
        p.error("--arch must be a JSON object")
    print(build(a.family, Path(a.out), overrides, Path(a.tokenizer_from)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
