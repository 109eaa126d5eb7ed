"""Model architecture from a local directory, the HF cache, the demo id and the catalog."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vllm_launcher.base.errors import ConfigError
from vllm_launcher.memory.arch import catalog_arch, load_arch
from vllm_launcher.memory.catalog import CATALOG

CONFIGS = Path(__file__).parent / "fixtures" / "configs"
PRESETS = Path(__file__).parent.parent / "presets"

# Parameter counts from the model cards (billions), for the computed counts.
CARD_PARAMS_B = {
    "Qwen/Qwen2.5-Coder-1.5B-Instruct": 1.54, "Qwen/Qwen2.5-Coder-3B-Instruct": 3.09,
    "Qwen/Qwen2.5-Coder-7B-Instruct": 7.61, "Qwen/Qwen2.5-7B-Instruct": 7.61,
    "Qwen/Qwen2.5-Coder-14B-Instruct": 14.7, "Qwen/Qwen2.5-Coder-32B-Instruct": 32.5,
    "deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct": 15.7, "mistralai/Codestral-22B-v0.1": 22.2,
    "meta-llama/Llama-3.1-8B-Instruct": 8.03, "meta-llama/Llama-3.3-70B-Instruct": 70.6,
}


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)


def test_local_directory_with_sharded_index(tmp_path):
    model = tmp_path / "qwen"
    shutil.copytree(CONFIGS / "Qwen2.5-7B-Instruct", model)
    (model / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 15231233024}}))
    arch = load_arch(str(model))
    assert (arch.num_layers, arch.num_kv_heads, arch.head_dim, arch.vocab_size) == (28, 4, 128, 152064)
    assert arch.weights_bytes == 15231233024
    assert arch.attention_bias and not arch.tie_word_embeddings and arch.sliding_window_layers == 0
    assert str(model) in arch.source


def test_local_directory_safetensors_file_sizes(tmp_path):
    model = tmp_path / "llama"
    shutil.copytree(CONFIGS / "Llama-3.1-8B-Instruct", model)
    (model / "model-00001-of-00002.safetensors").write_bytes(b"x" * 1000)
    (model / "model-00002-of-00002.safetensors").write_bytes(b"x" * 500)
    assert load_arch(str(model)).weights_bytes == 1500


def test_hf_cache_snapshot(tmp_path, monkeypatch):
    cache = tmp_path / "hf" / "hub" / "models--someorg--SomeModel"
    snapshot = cache / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    shutil.copy(CONFIGS / "Llama-3.1-8B-Instruct" / "config.json", snapshot / "config.json")
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text("abc123")
    arch = load_arch("someorg/SomeModel")
    assert arch.num_layers == 32 and "Hugging Face cache" in arch.source


def test_hf_cache_beats_catalog(tmp_path):
    snapshot = tmp_path / "hf" / "hub" / "models--Qwen--Qwen2.5-Coder-7B-Instruct" / "snapshots" / "x"
    snapshot.mkdir(parents=True)
    config = json.loads((CONFIGS / "Qwen2.5-7B-Instruct" / "config.json").read_text())
    (snapshot / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 12345}))
    assert load_arch("Qwen/Qwen2.5-Coder-7B-Instruct").max_position_embeddings == 12345


def test_mla_moe_config():
    arch = load_arch(str(CONFIGS / "DeepSeek-Coder-V2-Lite-Instruct"))
    assert arch.kv_lora_rank == 512 and arch.qk_rope_head_dim == 64 and arch.num_layers == 27
    assert arch.num_experts == 64 and arch.num_experts_per_tok == 6 and arch.dense_layers == 1
    assert arch.param_count == pytest.approx(15.7e9, rel=0.01)


def test_catalog_covers_every_builtin_preset_model():
    import yaml

    models = {yaml.safe_load(p.read_text()).get("model") for p in PRESETS.glob("*.yaml")} - {None}
    for model in models:
        assert catalog_arch(model) is not None, model


@pytest.mark.parametrize("model", sorted(CARD_PARAMS_B))
def test_catalog_entries_have_sources_and_card_parameter_counts(model):
    arch = catalog_arch(model)
    assert "config.json" in CATALOG[model]["source"]
    assert arch.param_count / 1e9 == pytest.approx(CARD_PARAMS_B[model], rel=0.02)


def test_catalog_lookup_is_case_insensitive_and_fixture_configs_agree():
    assert catalog_arch("qwen/qwen2.5-7b-instruct").num_layers == 28
    for name, model in (("Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B-Instruct"),
                        ("Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"),
                        ("DeepSeek-Coder-V2-Lite-Instruct", "deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct")):
        fixture = load_arch(str(CONFIGS / name))
        catalog = catalog_arch(model)
        assert fixture.model_dump(exclude={"source"}) == catalog.model_dump(exclude={"source"})


def test_demo_model_id():
    arch = load_arch("vllm-launch/tiny-qwen2")
    assert (arch.hidden_size, arch.num_layers, arch.num_attention_heads, arch.num_kv_heads, arch.head_dim,
            arch.intermediate_size, arch.max_position_embeddings) == (128, 2, 4, 2, 32, 256, 4096)
    assert arch.tie_word_embeddings and arch.default_dtype == "float32"


def test_unknown_model_says_how_to_supply_the_config():
    # An unknown model is bad input (exit 2), not a run-time failure.
    with pytest.raises(ConfigError, match="local model directory"):
        load_arch("nobody/no-such-model")
    with pytest.raises(ConfigError, match="no such model directory"):
        load_arch("./no/such/dir")


def test_directory_without_config(tmp_path):
    with pytest.raises(ConfigError, match=r"no config.json"):
        load_arch(str(tmp_path))
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a JSON object"):
        load_arch(str(tmp_path))


def test_models_and_estimate_import_no_heavy_modules():
    import subprocess
    import sys

    code = ("import sys, vllm_launcher.memory.arch, vllm_launcher.memory.estimate, "
            "vllm_launcher.memory.catalog; "
            "print([m for m in ('torch', 'transformers', 'httpx', 'vllm', 'rich') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
