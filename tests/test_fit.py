"""`fit`: proposals that the estimate accepts, TP choice, tool parsers."""

from __future__ import annotations

import pytest

from vllm_launcher.errors import ConfigError, LaunchError
from vllm_launcher.estimate import estimate
from vllm_launcher.fit import fit, tool_parser_for
from vllm_launcher.hardware import hypothetical
from vllm_launcher.models import load_arch


def test_gpu_fit_largest_context_for_concurrency_fits():
    hw = hypothetical("cuda", 1, 23.5, ram_gib=64)
    preset = fit("Qwen/Qwen2.5-Coder-7B-Instruct", hw, concurrency=4)
    est = estimate(preset, load_arch(preset.model), hw)
    assert est.fits and est.max_concurrency >= 4
    assert preset.tool_calling.parser == "hermes" and preset.tool_calling.enabled
    assert (preset.tensor_parallel_size or 1) == 1


def test_gpu_fit_picks_a_tp_that_fits_and_divides_heads():
    hw = hypothetical("cuda", 4, 48, ram_gib=256)
    preset = fit("Qwen/Qwen2.5-Coder-32B-Instruct", hw, context=32768)
    assert preset.tensor_parallel_size == 2 and preset.max_model_len == 32768
    assert estimate(preset, load_arch(preset.model), hw).fits


def test_cpu_fit_sets_kv_space_and_fits():
    hw = hypothetical("cpu", ram_gib=32)
    preset = fit("Qwen/Qwen2.5-Coder-1.5B-Instruct", hw, context=16384, concurrency=2)
    assert preset.device == "cpu" and preset.kv_cache_space_gib >= 1 and preset.max_model_len == 16384
    est = estimate(preset, load_arch(preset.model), hw)
    assert est.fits and est.max_concurrency >= 2


def test_cpu_fit_falls_back_to_bfloat16_when_ram_is_short():
    hw = hypothetical("cpu", ram_gib=12)
    preset = fit("Qwen/Qwen2.5-Coder-3B-Instruct", hw, context=4096)
    assert preset.dtype == "bfloat16"


def test_fit_refuses_what_cannot_fit():
    with pytest.raises(LaunchError, match="does not fit"):
        fit("meta-llama/Llama-3.3-70B-Instruct", hypothetical("cuda", 1, 24, ram_gib=64))
    with pytest.raises(LaunchError, match="limit"):
        fit("Qwen/Qwen2.5-Coder-7B-Instruct", hypothetical("cuda", 1, 80, ram_gib=64), context=10**6)


@pytest.mark.parametrize(("model", "parser"), [
    ("Qwen/Qwen2.5-Coder-7B-Instruct", "hermes"),
    ("meta-llama/Llama-3.1-8B-Instruct", "llama3_json"),
    ("mistralai/Codestral-22B-v0.1", "mistral"),
    ("deepseek-ai/DeepSeek-V3", "deepseek_v3"),
    ("Qwen/Qwen3-Coder-30B-A3B-Instruct", "qwen3_coder"),
    ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "llama4_json"),
    ("deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct", None),
])
def test_tool_parser_by_family(model, parser):
    assert tool_parser_for(model) == parser


def test_gpu_fit_uses_the_smallest_tp_that_reaches_the_full_context():
    # Llama 3.3 70B on 8 x 80 GiB: TP 2 holds only ~20K tokens, TP 4 holds the model's whole 131072.
    hw = hypothetical("cuda", 8, 80, ram_gib=512)
    preset = fit("meta-llama/Llama-3.3-70B-Instruct", hw)
    assert preset.tensor_parallel_size == 4 and preset.max_model_len == 131072
    assert "8 x 80.0 GiB GPU" in preset.description and "TP 4" in preset.description
    assert estimate(preset, load_arch(preset.model), hw).fits
    # More requests at once need more KV: the next TP that divides the heads.
    busy = fit("meta-llama/Llama-3.3-70B-Instruct", hw, context=131072, concurrency=6)
    est = estimate(busy, load_arch(busy.model), hw)
    assert busy.tensor_parallel_size == 8 and est.fits and est.max_concurrency >= 6


def test_gpu_fit_shrinks_the_context_only_when_no_tp_reaches_it():
    hw = hypothetical("cuda", 2, 80, ram_gib=512)
    preset = fit("meta-llama/Llama-3.3-70B-Instruct", hw)
    assert preset.tensor_parallel_size == 2 and 4096 <= preset.max_model_len < 131072
    assert estimate(preset, load_arch(preset.model), hw).fits
    with pytest.raises(LaunchError, match=r"does not fit.*at most"):
        fit("meta-llama/Llama-3.3-70B-Instruct", hw, context=131072)


def test_fit_context_above_the_model_limit_is_bad_input():
    with pytest.raises(ConfigError, match=r"32768.*VLLM_ALLOW_LONG_MAX_MODEL_LEN"):
        fit("Qwen/Qwen2.5-Coder-7B-Instruct", hypothetical("cuda", 1, 80, ram_gib=64), context=10**7)


def test_bad_preset_name_is_refused_before_building_the_preset():
    with pytest.raises(ConfigError, match="letters, digits"):
        fit("Qwen/Qwen2.5-Coder-1.5B-Instruct", hypothetical("cpu", ram_gib=32), name="../evil")
