"""`fit`: proposals that the estimate accepts, TP choice, tool parsers."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from vllm_launcher.base.errors import ConfigError, LaunchError
from vllm_launcher.machine.hardware import GIB, hypothetical
from vllm_launcher.memory.arch import load_arch
from vllm_launcher.memory.estimate import estimate
from vllm_launcher.memory.fit import fit, tool_parser_for


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


# ------------------------------------------------------------------------- when nothing fits


def _ask(model: str, *machine: str, **fields):
    from vllm_launcher.memory.fit import Ask

    return Ask(model, machine_args=tuple(machine), **fields)


def _run_fit(argv: list[str], tmp_path) -> subprocess.CompletedProcess:
    from cli_helpers import isolated_env, run_cli

    assert argv[:2] == ["vllm-launch", "fit"]
    return run_cli(argv[1:], isolated_env(tmp_path))


def test_32b_on_two_24gib_gpus_gets_fp8_awq_and_four_gpus(tmp_path):
    """The issue's case: every proposal is a real fit whose command, run, gives that preset."""
    from vllm_launcher.memory.fit import proposals

    model = "Qwen/Qwen2.5-Coder-32B-Instruct"
    machine = ("--device", "cuda", "--gpus", "2", "--gpu-mem-gib", "24")
    hw = hypothetical("cuda", 2, 24)
    with pytest.raises(LaunchError, match=r"weights need 30\.51 GiB per GPU"):
        fit(model, hw)
    found = {p.change: p for p in proposals(_ask(model, *machine), hw)}
    assert list(found) == ["online fp8 quantization (quantization: fp8)",
                           "the quantized checkpoint Qwen/Qwen2.5-Coder-32B-Instruct-AWQ",
                           "the quantized checkpoint Qwen/Qwen2.5-Coder-32B-Instruct-GPTQ-Int4",
                           "the quantized checkpoint Qwen/Qwen2.5-Coder-32B-Instruct-GPTQ-Int8",
                           "4 GPUs like these"]
    for proposal in found.values():
        assert proposal.estimate.fits, proposal
        done = _run_fit(proposal.command, tmp_path)
        assert done.returncode == 0, (proposal.command, done.stderr)
        made = yaml.safe_load(done.stdout)
        assert made["model"] == proposal.preset.model
        assert made.get("quantization") == proposal.preset.quantization
        assert made["max_model_len"] == proposal.preset.max_model_len
        assert made.get("tensor_parallel_size") == proposal.preset.tensor_parallel_size
    assert found["4 GPUs like these"].preset.tensor_parallel_size == 4
    assert found["online fp8 quantization (quantization: fp8)"].estimate.weights_bytes_per_gpu < 17 * GIB


def test_70b_on_one_80gib_gpu_gets_fp8_w4a16_and_two_gpus():
    from vllm_launcher.memory.fit import proposals

    model = "meta-llama/Llama-3.3-70B-Instruct"
    hw = hypothetical("cuda", 1, 80)
    found = {p.change: p for p in proposals(_ask(model, "--gpus", "1", "--gpu-mem-gib", "80"), hw)}
    w4a16 = found["the quantized checkpoint RedHatAI/Llama-3.3-70B-Instruct-quantized.w4a16"]
    assert w4a16.estimate.fits and w4a16.preset.max_model_len >= 65536
    assert found["2 GPUs like these"].preset.tensor_parallel_size == 2
    assert "online fp8 quantization (quantization: fp8)" in found


def test_a_shorter_context_and_an_fp8_kv_cache_when_only_the_kv_is_short():
    from vllm_launcher.memory.fit import proposals

    model, hw = "Qwen/Qwen2.5-Coder-7B-Instruct", hypothetical("cuda", 1, 24)
    with pytest.raises(LaunchError):
        fit(model, hw, context=32768, concurrency=4)
    found = {p.change.split(" (")[0]: p for p in proposals(_ask(model, context=32768, concurrency=4), hw)}
    assert "fp8 KV cache" in found and found["fp8 KV cache"].preset.kv_cache_dtype == "fp8"
    shorter = found["a shorter context"]
    assert shorter.preset.max_model_len < 32768 and shorter.estimate.max_concurrency >= 4
    assert shorter.command[shorter.command.index("--context") + 1] == str(shorter.preset.max_model_len)


def test_a_checkpoint_the_user_names_is_tried(tmp_path):
    """--model OTHER: a local copy of a quantized checkpoint (a real config.json with AWQ's quantization)."""
    from vllm_launcher.memory.catalog import catalog_entry
    from vllm_launcher.memory.fit import proposals

    other = tmp_path / "coder-32b-awq"
    other.mkdir()
    config = catalog_entry("Qwen/Qwen2.5-Coder-32B-Instruct-AWQ")["config"]
    (other / "config.json").write_text(json.dumps(config))
    hw = hypothetical("cuda", 2, 24)
    found = [p for p in proposals(_ask("Qwen/Qwen2.5-Coder-32B-Instruct", others=(str(other),)), hw)
             if p.preset.model == str(other)]
    assert found and found[0].estimate.fits and found[0].command[2] == str(other)


def test_no_fp8_on_a_gpu_older_than_ampere():
    from vllm_launcher.memory.fit import proposals

    hw = hypothetical("cuda", 2, 24)
    turing = [g.model_copy(update={"compute_capability": (7, 5)}) for g in hw.gpus]
    hw = hw.model_copy(update={"gpus": turing})
    changes = [p.change for p in proposals(_ask("Qwen/Qwen2.5-Coder-32B-Instruct"), hw)]
    assert not any("fp8" in c for c in changes) and "4 GPUs like these" in changes
    ampere = hw.model_copy(update={"gpus": [g.model_copy(update={"compute_capability": (8, 0)})
                                            for g in hw.gpus]})
    fp8 = [p for p in proposals(_ask("Qwen/Qwen2.5-Coder-32B-Instruct"), ampere) if "fp8" in p.change]
    assert fp8 and "Marlin" in fp8[0].note


def test_tensor_parallel_within_a_node_then_pipeline_stages():
    from vllm_launcher.memory.fit import _layouts

    llama = load_arch("meta-llama/Llama-3.3-70B-Instruct")
    assert _layouts(llama, 16) == [(1, 1), (2, 1), (4, 1), (8, 1), (8, 2)]
    assert _layouts(llama, 3) == [(1, 1), (2, 1)]
    preset = fit("meta-llama/Llama-3.3-70B-Instruct", hypothetical("cuda", 16, 16), context=8192)
    assert (preset.tensor_parallel_size, preset.pipeline_parallel_size) == (8, 2)


def test_fit_json_when_it_fits_and_when_it_does_not(tmp_path):
    from cli_helpers import isolated_env, run_cli

    env = isolated_env(tmp_path)
    machine = ["--device", "cuda", "--gpus", "2", "--gpu-mem-gib", "24"]
    no = run_cli(["fit", "Qwen/Qwen2.5-Coder-32B-Instruct", *machine, "--json"], env)
    assert no.returncode == 1, no.stderr
    data = json.loads(no.stdout)
    assert data["fits"] is False and "weights need" in data["reason"]
    first = data["proposals"][0]
    assert set(first) == {"change", "note", "command", "preset", "estimate"}
    assert first["command"].startswith("vllm-launch fit Qwen/Qwen2.5-Coder-32B-Instruct --quantization fp8")
    human = run_cli(["fit", "Qwen/Qwen2.5-Coder-32B-Instruct", *machine], env)
    assert human.returncode == 1 and "Nearest launches that fit:" in human.stdout
    assert human.stderr.count("\n") == 1 and "does not fit" in human.stderr
    yes = run_cli(["fit", "Qwen/Qwen2.5-Coder-32B-Instruct-AWQ", *machine, "--json"], env)
    assert yes.returncode == 0 and json.loads(yes.stdout)["fits"] is True
    assert json.loads(yes.stdout)["estimate"]["fits"] is True


def test_llama_4_scout_on_one_80gib_gpu_gets_its_w4a16_checkpoint_and_four_gpus():
    """A multimodal MoE model: the proposals' estimates carry the vision tower and the encoder profile."""
    from vllm_launcher.memory.fit import proposals

    model = "meta-llama/Llama-4-Scout-17B-16E-Instruct"
    hw = hypothetical("cuda", 1, 80)
    found = {p.change: p for p in proposals(_ask(model), hw)}
    w4a16 = found["the quantized checkpoint RedHatAI/Llama-4-Scout-17B-16E-Instruct-quantized.w4a16"]
    assert w4a16.estimate.fits and w4a16.estimate.encoder_gib > 0
    assert found["4 GPUs like these"].preset.tensor_parallel_size == 4


def test_the_variants_of_the_models_vllm_recipe_are_tried(tmp_path, monkeypatch):
    """$VLLM_LAUNCH_RECIPES: a recipe whose variant serves another checkpoint (here a local AWQ copy)."""
    from vllm_launcher.memory.catalog import catalog_entry
    from vllm_launcher.memory.fit import proposals, recipe_checkpoints

    awq = tmp_path / "coder-32b-awq"
    awq.mkdir()
    config = catalog_entry("Qwen/Qwen2.5-Coder-32B-Instruct-AWQ")["config"]
    (awq / "config.json").write_text(json.dumps(config))
    recipe = tmp_path / "recipes" / "models" / "Qwen" / "Qwen2.5-Coder-32B-Instruct.yaml"
    recipe.parent.mkdir(parents=True)
    recipe.write_text(yaml.safe_dump({
        "meta": {"title": "Qwen2.5-Coder-32B-Instruct"},
        "model": {"model_id": "Qwen/Qwen2.5-Coder-32B-Instruct"},
        "variants": {"default": {"precision": "bf16", "vram_minimum_gb": 80},
                     "awq": {"precision": "int4", "vram_minimum_gb": 24, "model_id": str(awq)}}}))
    model, hw = "Qwen/Qwen2.5-Coder-32B-Instruct", hypothetical("cuda", 2, 24)
    assert recipe_checkpoints(model) == []
    assert str(awq) not in [p.preset.model for p in proposals(_ask(model), hw)]
    monkeypatch.setenv("VLLM_LAUNCH_RECIPES", str(tmp_path / "recipes"))
    assert recipe_checkpoints(model) == [str(awq)]
    found = [p for p in proposals(_ask(model), hw) if p.preset.model == str(awq)]
    assert found and found[0].estimate.fits
