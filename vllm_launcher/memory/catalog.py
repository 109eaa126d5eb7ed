"""Built-in model catalog: the config.json numbers of the models the presets and the seed guide name.

Each entry is the subset of the model's Hugging Face `config.json` that the estimate reads, with where the
numbers came from. A plain dict (no file to parse) so that loading it costs nothing. Parameter counts are
computed from these numbers (`models.count_params`); the model card's figure is quoted in `source`.

Confirmation: the numbers are those of each model's config.json on the Hugging Face Hub. They were checked
against public copies where we could find them (noted per entry as "confirmed: ..."); entries marked
"not independently confirmed" rely on the Hub config as recalled and should be re-checked when a cached
copy is at hand (`vllm-launch estimate --model ORG/NAME` then reads the cached config.json instead).
"""

from __future__ import annotations

from typing import Any

_QWEN25_COMMON = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "torch_dtype": "bfloat16",
                  "use_sliding_window": False, "sliding_window": 131072}
_LLAMA31_COMMON = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "bfloat16",
                   "vocab_size": 128256, "max_position_embeddings": 131072, "tie_word_embeddings": False,
                   "attention_bias": False}

CATALOG: dict[str, dict[str, Any]] = {
    "Qwen/Qwen2.5-Coder-1.5B-Instruct": {
        "source": "huggingface.co/Qwen/Qwen2.5-Coder-1.5B-Instruct config.json (card: 1.54B params); "
                  "confirmed: model card (28 layers, 12 Q / 2 KV heads) and a public Qwen2.5-Coder-1.5B "
                  "config copy (hidden 1536, intermediate 8960)",
        "config": {**_QWEN25_COMMON, "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                   "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
                   "max_position_embeddings": 32768, "tie_word_embeddings": True},
    },
    "Qwen/Qwen2.5-Coder-3B-Instruct": {
        "source": "huggingface.co/Qwen/Qwen2.5-Coder-3B-Instruct config.json (card: 3.09B params); "
                  "confirmed: the same shape appears in a public Qwen2.5-3B-family config copy "
                  "(hidden 2048, intermediate 11008, 36 layers, 16 Q / 2 KV heads, head_dim 128)",
        "config": {**_QWEN25_COMMON, "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
                   "num_attention_heads": 16, "num_key_value_heads": 2, "vocab_size": 151936,
                   "max_position_embeddings": 32768, "tie_word_embeddings": True},
    },
    "Qwen/Qwen2.5-Coder-7B-Instruct": {
        "source": "huggingface.co/Qwen/Qwen2.5-Coder-7B-Instruct config.json (card: 7.61B params); "
                  "confirmed: model card (28 layers, 28 Q / 4 KV heads) and a public Qwen2.5-7B layer-shape "
                  "table (q 3584x3584, k/v 512x3584, mlp 18944x3584)",
        "config": {**_QWEN25_COMMON, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                   "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
                   "max_position_embeddings": 32768, "tie_word_embeddings": False},
    },
    "Qwen/Qwen2.5-7B-Instruct": {
        "source": "huggingface.co/Qwen/Qwen2.5-7B-Instruct config.json (card: 7.61B params); same shape as "
                  "Qwen2.5-Coder-7B; confirmed as above, and by vLLM 0.19's H100 log (weights 14.25 GiB)",
        "config": {**_QWEN25_COMMON, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                   "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
                   "max_position_embeddings": 32768, "tie_word_embeddings": False},
    },
    "Qwen/Qwen2.5-Coder-14B-Instruct": {
        "source": "huggingface.co/Qwen/Qwen2.5-Coder-14B-Instruct config.json (card: 14.7B params); "
                  "not independently confirmed",
        "config": {**_QWEN25_COMMON, "hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 48,
                   "num_attention_heads": 40, "num_key_value_heads": 8, "vocab_size": 152064,
                   "max_position_embeddings": 32768, "tie_word_embeddings": False},
    },
    "Qwen/Qwen2.5-Coder-32B-Instruct": {
        "source": "huggingface.co/Qwen/Qwen2.5-Coder-32B-Instruct config.json (card: 32.5B params); "
                  "not independently confirmed",
        "config": {**_QWEN25_COMMON, "hidden_size": 5120, "intermediate_size": 27648, "num_hidden_layers": 64,
                   "num_attention_heads": 40, "num_key_value_heads": 8, "vocab_size": 152064,
                   "max_position_embeddings": 32768, "tie_word_embeddings": False},
    },
    "deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct": {
        "source": "huggingface.co/deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct config.json (card: 16B total, "
                  "2.4B active); confirmed: public DeepSeek-V2-Lite configs (Megatron/MaxText: 27 layers, "
                  "hidden 2048, 16 heads, kv_lora_rank 512, rope 64, nope 128, v 128, 64 experts, expert "
                  "MLP 1408, dense MLP 10944, first layer dense, 2 shared experts)",
        "config": {"architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2",
                   "torch_dtype": "bfloat16", "hidden_size": 2048, "intermediate_size": 10944,
                   "moe_intermediate_size": 1408, "num_hidden_layers": 27, "num_attention_heads": 16,
                   "num_key_value_heads": 16, "n_routed_experts": 64, "n_shared_experts": 2,
                   "num_experts_per_tok": 6, "first_k_dense_replace": 1, "kv_lora_rank": 512,
                   "q_lora_rank": None, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
                   "vocab_size": 102400, "max_position_embeddings": 163840, "tie_word_embeddings": False},
    },
    "mistralai/Codestral-22B-v0.1": {
        "source": "huggingface.co/mistralai/Codestral-22B-v0.1 config.json (card: 22.2B params); "
                  "not independently confirmed (only the 32K context was found in public copies)",
        "config": {"architectures": ["MistralForCausalLM"], "model_type": "mistral",
                   "torch_dtype": "bfloat16", "hidden_size": 6144, "intermediate_size": 16384,
                   "num_hidden_layers": 56, "num_attention_heads": 48, "num_key_value_heads": 8,
                   "head_dim": 128, "vocab_size": 32768, "max_position_embeddings": 32768,
                   "sliding_window": None, "tie_word_embeddings": False},
    },
    "meta-llama/Llama-3.1-8B-Instruct": {
        "source": "huggingface.co/meta-llama/Llama-3.1-8B-Instruct config.json (card: 8.03B params); "
                  "confirmed: public Llama 3.1 8B tables (vocab 128256, hidden 4096, MLP 14336, 32 layers, "
                  "32 Q / 8 KV heads, untied, 131072 positions) and vLLM 0.19's H100 log (weights 14.99 GiB)",
        "config": {**_LLAMA31_COMMON, "hidden_size": 4096, "intermediate_size": 14336,
                   "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8},
    },
    "meta-llama/Llama-3.3-70B-Instruct": {
        "source": "huggingface.co/meta-llama/Llama-3.3-70B-Instruct config.json (card: 70.6B params); "
                  "confirmed: public Llama 3.3 70B table and a config.json copy (hidden 8192, MLP 28672, "
                  "80 layers, 64 Q / 8 KV heads, vocab 128256, 131072 positions)",
        "config": {**_LLAMA31_COMMON, "hidden_size": 8192, "intermediate_size": 28672,
                   "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8},
    },
    "meta-llama/Llama-4-Scout-17B-16E-Instruct": {
        "source": "huggingface.co/meta-llama/Llama-4-Scout-17B-16E-Instruct config.json (card: 109B total, "
                  "17B active params, 16 experts); not independently confirmed (text_config as recalled: "
                  "hidden 5120, 48 layers, every one MoE with 16 routed experts of 8192 plus a shared one, "
                  "40 Q / 8 KV heads; vision_config 34 layers of 1408 wide, MLP 5632, 336-pixel tiles of "
                  "14-pixel patches, pixel shuffle 0.5)",
        "config": {"architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4",
                   "torch_dtype": "bfloat16", "tie_word_embeddings": False,
                   "text_config": {"model_type": "llama4_text", "hidden_size": 5120,
                                   "intermediate_size": 8192,
                                   "intermediate_size_mlp": 16384, "num_hidden_layers": 48,
                                   "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128,
                                   "num_local_experts": 16, "num_experts_per_tok": 1,
                                   "interleave_moe_layer_step": 1, "vocab_size": 202048,
                                   "max_position_embeddings": 10485760, "attention_chunk_size": 8192,
                                   "use_qk_norm": True, "tie_word_embeddings": False},
                   "vision_config": {"model_type": "llama4_vision_model", "hidden_size": 1408,
                                     "intermediate_size": 5632, "num_hidden_layers": 34,
                                     "num_attention_heads": 16, "image_size": 336, "patch_size": 14,
                                     "num_channels": 3, "pixel_shuffle_ratio": 0.5,
                                     "projector_input_dim": 4096,
                                     "projector_output_dim": 4096, "vision_output_dim": 4096}},
    },
    "vllm-launch/tiny-qwen2": {
        "source": "vllm-launch's demo model (vllm_launcher/demo/tiny_model.py DEFAULT_ARCH); random weights",
        "config": {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "torch_dtype": "float32",
                   "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
                   "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 4096,
                   "max_position_embeddings": 4096, "tie_word_embeddings": True, "use_sliding_window": False},
    },
}

# Published quantized checkpoints of catalog models, with the quantization_config their config.json carries
# (the rest of their config.json is the base model's): `fit` proposes them when the base model does not fit,
# and they load by name like any catalog model.
_AWQ = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}
_GPTQ_INT4 = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True}
_GPTQ_INT8 = {**_GPTQ_INT4, "bits": 8}
_CT_W4A16 = {"quant_method": "compressed-tensors", "config_groups": {"group_0": {
    "targets": ["Linear"], "weights": {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group",
                                       "group_size": 128}}}}
_CT_FP8_DYNAMIC = {"quant_method": "compressed-tensors", "config_groups": {"group_0": {
    "targets": ["Linear"], "weights": {"num_bits": 8, "type": "float", "symmetric": True,
                                       "strategy": "channel"}}}}
QUANTIZED_CHECKPOINTS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "Qwen/Qwen2.5-Coder-7B-Instruct": [("Qwen/Qwen2.5-Coder-7B-Instruct-AWQ", _AWQ),
                                       ("Qwen/Qwen2.5-Coder-7B-Instruct-GPTQ-Int4", _GPTQ_INT4)],
    "Qwen/Qwen2.5-7B-Instruct": [("Qwen/Qwen2.5-7B-Instruct-AWQ", _AWQ)],
    "Qwen/Qwen2.5-Coder-14B-Instruct": [("Qwen/Qwen2.5-Coder-14B-Instruct-AWQ", _AWQ),
                                        ("Qwen/Qwen2.5-Coder-14B-Instruct-GPTQ-Int4", _GPTQ_INT4)],
    "Qwen/Qwen2.5-Coder-32B-Instruct": [("Qwen/Qwen2.5-Coder-32B-Instruct-AWQ", _AWQ),
                                        ("Qwen/Qwen2.5-Coder-32B-Instruct-GPTQ-Int4", _GPTQ_INT4),
                                        ("Qwen/Qwen2.5-Coder-32B-Instruct-GPTQ-Int8", _GPTQ_INT8)],
    "meta-llama/Llama-4-Scout-17B-16E-Instruct": [
        ("RedHatAI/Llama-4-Scout-17B-16E-Instruct-quantized.w4a16", _CT_W4A16)],
    "meta-llama/Llama-3.3-70B-Instruct": [("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", _CT_FP8_DYNAMIC),
                                          ("RedHatAI/Llama-3.3-70B-Instruct-quantized.w4a16", _CT_W4A16)],
}
_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    variant.lower(): (base, quant)
    for base, variants in QUANTIZED_CHECKPOINTS.items() for variant, quant in variants}
_BY_LOWER = {name.lower(): name for name in CATALOG}


def quantized_checkpoints(model: str) -> list[str]:
    """The published quantized checkpoints of MODEL that the catalog knows (none: it knows of none)."""
    name = _BY_LOWER.get(model.lower())
    return [variant for variant, _ in QUANTIZED_CHECKPOINTS.get(name or "", [])]


def catalog_entry(model: str) -> dict | None:
    """The catalog's entry ({"config", "source"}) for a model id, case-insensitive, or None. Plain data: the
    architecture is built from it by models.catalog_arch."""
    name = _BY_LOWER.get(model.lower())
    if name is not None:
        return CATALOG[name]
    if model.lower() in _VARIANTS:
        base, quant = _VARIANTS[model.lower()]
        entry = CATALOG[base]
        return {"source": f"{entry['source']}; quantization_config of the published {model}",
                "config": {**entry["config"], "quantization_config": quant}}
    return None
