"""Memory estimate: GPU figures against public vLLM 0.19 H100 logs, CPU rules against vLLM 0.32's source."""

from __future__ import annotations

from pathlib import Path

import pytest

from vllm_launcher.machine.hardware import GIB, Hardware, NumaNode, hypothetical
from vllm_launcher.memory.arch import load_arch
from vllm_launcher.memory.estimate import (
    estimate,
    kv_bytes_per_token,
    reported_tokens,
    resolve_model_dtype,
    weights_bytes,
)
from vllm_launcher.memory.quant import Quant
from vllm_launcher.preset.schema import Preset

CONFIGS = Path(__file__).parent / "fixtures" / "configs"
H100_GIB = 79.19  # what vLLM 0.19 reports for an H100 80GB


def h100(gpus: int = 1) -> Hardware:
    return hypothetical("cuda", gpus, H100_GIB, ram_gib=512)


def cpu_machine(ram_gib: float = 24, node_total_gib: float = 8.6, node_free_gib: float = 8.0) -> Hardware:
    return Hardware(ram_total_bytes=int(ram_gib * GIB), ram_available_bytes=int((ram_gib - 1) * GIB),
                    cpu_logical=2, cpu_physical=2,
                    numa_nodes=[NumaNode(id=0, total_bytes=int(node_total_gib * GIB),
                                         free_bytes=int(node_free_gib * GIB))])


def gpu_preset(model: str, tp: int = 1, **extra) -> Preset:
    return Preset(name="t", model=model, device="cuda", gpu_memory_utilization=0.95, max_model_len=8192,
                  tensor_parallel_size=tp, **extra)


# Public vLLM 0.19 logs, H100 80GB, util 0.95, max_model_len 8192, bf16 (issue 4).
GPU_CASES = [
    ("Qwen2.5-7B-Instruct", 1, 1_096_000, 14.25),
    ("Qwen2.5-7B-Instruct", 2, 2_390_592, None),
    ("Llama-3.1-8B-Instruct", 1, 476_016, 14.99),
]


@pytest.mark.parametrize(("model", "tp", "logged_tokens", "logged_weights_gib"), GPU_CASES)
def test_gpu_kv_tokens_within_ten_percent_of_vllm_logs(model, tp, logged_tokens, logged_weights_gib):
    est = estimate(gpu_preset(model, tp), load_arch(str(CONFIGS / model)), h100(tp))
    assert est.fits
    assert abs(est.kv_cache_tokens / logged_tokens - 1) < 0.10
    # In fact within 1.5%: keep the bound tight enough to notice a regression of the model.
    assert abs(est.kv_cache_tokens / logged_tokens - 1) < 0.015
    assert est.kv_cache_tokens % 16 == 0
    assert est.max_concurrency == pytest.approx(est.kv_cache_tokens / 8192, rel=1e-3)
    if logged_weights_gib:
        assert abs(est.weights_gib / logged_weights_gib - 1) < 0.01


def test_gpu_activation_and_non_torch_near_observed():
    qwen = estimate(gpu_preset("Qwen2.5-7B-Instruct"), load_arch(str(CONFIGS / "Qwen2.5-7B-Instruct")),
                    h100())
    llama = estimate(gpu_preset("Llama-3.1-8B-Instruct"), load_arch(str(CONFIGS / "Llama-3.1-8B-Instruct")),
                     h100())
    assert qwen.max_num_batched_tokens == 8192  # vLLM's default on an H100
    assert qwen.activation_gib == pytest.approx(2.21, rel=0.05)
    assert llama.activation_gib == pytest.approx(1.89, rel=0.05)
    assert qwen.non_torch_gib == pytest.approx(0.25, abs=0.02)
    tp2 = estimate(gpu_preset("Qwen2.5-7B-Instruct", 2), load_arch(str(CONFIGS / "Qwen2.5-7B-Instruct")),
                   h100(2))
    assert tp2.non_torch_gib == pytest.approx(2.1, abs=0.05)


def test_kv_bytes_per_token_gqa_tp_mla_fp8():
    qwen = load_arch(str(CONFIGS / "Qwen2.5-7B-Instruct"))
    assert kv_bytes_per_token(qwen, 1, None, "bfloat16") == 2 * 28 * 4 * 128 * 2
    assert kv_bytes_per_token(qwen, 2, None, "bfloat16") == 2 * 28 * 2 * 128 * 2
    assert kv_bytes_per_token(qwen, 8, None, "bfloat16") == 2 * 28 * 1 * 128 * 2  # at least one head per rank
    assert kv_bytes_per_token(qwen, 1, "fp8", "bfloat16") == 2 * 28 * 4 * 128
    deepseek = load_arch(str(CONFIGS / "DeepSeek-Coder-V2-Lite-Instruct"))
    assert deepseek.is_mla and deepseek.is_moe and deepseek.dense_layers == 1
    assert kv_bytes_per_token(deepseek, 1, None, "bfloat16") == 27 * (512 + 64) * 2
    assert kv_bytes_per_token(deepseek, 2, None, "bfloat16") == 27 * (512 + 64) * 2  # MLA is not split by TP


def test_weights_bytes_dtype_tp_and_quantized():
    llama = load_arch(str(CONFIGS / "Llama-3.1-8B-Instruct"))
    assert llama.param_count == pytest.approx(8.03e9, rel=0.005)
    assert weights_bytes(llama, "bfloat16") == llama.param_count * 2
    assert weights_bytes(llama, "float32") == llama.param_count * 4
    assert weights_bytes(llama, "bfloat16", tp=2) == pytest.approx(llama.param_count, abs=1)
    # 4-bit with no group scales (a bare bit count): the projections shrink to a quarter of fp16;
    # embeddings, LM head and norms stay fp16.
    awq = llama.model_copy(update={"quant": Quant(method="awq", bits=4)})
    embed_head = 2 * llama.vocab_size * llama.hidden_size
    expected = (llama.param_count - embed_head) // 2 + embed_head * 2
    assert weights_bytes(awq, "float16") == pytest.approx(expected, rel=1e-4)


def test_weights_from_safetensors_size_rescaled_to_run_dtype():
    arch = load_arch("vllm-launch/tiny-qwen2").model_copy(update={"weights_bytes": 4_000_000})
    assert arch.default_dtype == "float32"
    assert weights_bytes(arch, "float32") == 4_000_000
    assert weights_bytes(arch, "bfloat16") == 2_000_000


def test_dtype_auto_downcasts_float32_checkpoints():
    tiny = load_arch("vllm-launch/tiny-qwen2")
    assert resolve_model_dtype(None, tiny) == "bfloat16"
    assert resolve_model_dtype("auto", tiny) == "bfloat16"
    assert resolve_model_dtype("float32", tiny) == "float32"
    assert resolve_model_dtype("half", tiny) == "float16"


def test_reported_tokens_follow_vllm_rounding():
    # 8192 blocks of 128 at max_model_len 2048 (16 blocks per request): the log's 1,048,576 and 512x.
    assert reported_tokens(8192, 2048, 128) == (1_048_576, 512.0)
    # A max_model_len that is not a multiple of the block: concurrency counts whole blocks per request.
    assert reported_tokens(100, 3000, 128) == (int(100 / 24 * 3000), 100 / 24)


def cpu_preset(**fields) -> Preset:
    return Preset(name="t", model="vllm-launch/tiny-qwen2", device="cpu", **fields)


def test_cpu_explicit_kv_space_matches_the_observed_log():
    """Observed here: 1 GiB, tiny model, float32 → `CPU KV cache size: 1,048,576 tokens ... 512.00x`."""
    est = estimate(cpu_preset(dtype="float32", kv_cache_space_gib=1, max_model_len=2048),
                   load_arch("vllm-launch/tiny-qwen2"), cpu_machine())
    assert est.kv_bytes_per_token == 2 * 2 * 2 * 32 * 4
    assert est.block_size == 128
    assert est.kv_cache_tokens == 1_048_576
    assert est.max_concurrency == 512.0
    assert est.fits and not est.reasons
    assert est.ram_needed_gib == pytest.approx(1 + 2.7, abs=0.05)


def test_cpu_null_block_makes_an_exact_fit_fail():
    """vLLM keeps one block back: KV of exactly ceil(L/128) blocks cannot hold one request of L."""
    arch = load_arch("vllm-launch/tiny-qwen2").model_copy(update={"max_position_embeddings": 1 << 20})
    per_token = 1024  # float32
    blocks = GIB // (128 * per_token)  # 8192
    fits = estimate(cpu_preset(dtype="float32", kv_cache_space_gib=1, max_model_len=(blocks - 1) * 128), arch,
                    cpu_machine())
    refused = estimate(cpu_preset(dtype="float32", kv_cache_space_gib=1, max_model_len=blocks * 128), arch,
                       cpu_machine())
    assert fits.fits
    assert not refused.fits
    assert refused.largest_max_model_len == (blocks - 1) * 128
    assert any(f"max_model_len <= {(blocks - 1) * 128}" in fix for fix in refused.fixes)


def test_cpu_kv_space_above_numa_node_is_refused_with_a_fix():
    est = estimate(cpu_preset(kv_cache_space_gib=16, max_model_len=2048), load_arch("vllm-launch/tiny-qwen2"),
                   cpu_machine(node_free_gib=7.5))
    assert not est.fits
    assert "NUMA node 0" in est.reasons[0]
    assert any("kv_cache_space_gib <= 6" in fix for fix in est.fixes)


def test_cpu_default_kv_rule_refused_when_node_cannot_spare_it():
    """Unset KV space on this machine: vLLM reserves 0.92 x node 0 and fails (VLLM-NOTES)."""
    est = estimate(cpu_preset(max_model_len=2048), load_arch("vllm-launch/tiny-qwen2"),
                   cpu_machine(node_total_gib=8.6, node_free_gib=7.9))
    assert not est.fits
    assert "unset" in est.reasons[0]
    assert any("kv_cache_space_gib" in fix for fix in est.fixes)
    roomy = estimate(cpu_preset(max_model_len=2048), load_arch("vllm-launch/tiny-qwen2"),
                     cpu_machine(ram_gib=256, node_total_gib=128, node_free_gib=126))
    assert roomy.fits and roomy.kv_cache_gib > 100


def test_cpu_host_ram_check_and_dtype_fix():
    est = estimate(Preset(name="t", model="Qwen/Qwen2.5-Coder-3B-Instruct", device="cpu", dtype="float32",
                          kv_cache_space_gib=4, max_model_len=16384),
                   load_arch("Qwen/Qwen2.5-Coder-3B-Instruct"), cpu_machine(ram_gib=16, node_free_gib=15,
                                                                           node_total_gib=16))
    assert not est.fits
    assert any("host RAM" in r for r in est.reasons)
    assert "use dtype bfloat16 (halves the weights)" in est.fixes


def test_cpu_tensor_parallel_needs_numa_nodes():
    est = estimate(cpu_preset(kv_cache_space_gib=1, tensor_parallel_size=2, max_model_len=2048),
                   load_arch("vllm-launch/tiny-qwen2"), cpu_machine())
    assert not est.fits and "NUMA nodes" in est.reasons[0]


def test_gpu_context_too_long_for_kv_gives_fixes():
    est = estimate(Preset(name="t", model="Qwen/Qwen2.5-Coder-32B-Instruct", device="cuda",
                          max_model_len=32768), load_arch("Qwen/Qwen2.5-Coder-32B-Instruct"),
                   hypothetical("cuda", 4, 48, ram_gib=128))
    assert not est.fits
    assert "weights need" in est.reasons[0]
    assert any("tensor_parallel_size 2" in fix for fix in est.fixes)


def test_gpu_heads_not_divisible_by_tp():
    est = estimate(Preset(name="t", model="Qwen/Qwen2.5-Coder-7B-Instruct", device="cuda",
                          tensor_parallel_size=8, max_model_len=8192),
                   load_arch("Qwen/Qwen2.5-Coder-7B-Instruct"), hypothetical("cuda", 8, 80, ram_gib=512))
    assert not est.fits
    assert any("not divisible" in r for r in est.reasons)
    assert any("1, 2, 4" in f for f in est.fixes)


def test_gpu_busy_device_and_missing_gpu():
    hw = h100().model_copy(deep=True)
    hw.gpus[0].free_bytes = 20 * GIB
    est = estimate(gpu_preset("Qwen2.5-7B-Instruct"), load_arch(str(CONFIGS / "Qwen2.5-7B-Instruct")), hw)
    assert not est.fits and "free memory" in est.reasons[0]
    none = estimate(gpu_preset("Qwen2.5-7B-Instruct"), load_arch(str(CONFIGS / "Qwen2.5-7B-Instruct")),
                    cpu_machine())
    assert not none.fits and "no GPU is visible" in none.reasons[0] and "--gpu-mem-gib" in none.reasons[0]


def test_max_model_len_above_model_limit():
    est = estimate(gpu_preset("Qwen2.5-7B-Instruct").model_copy(update={"max_model_len": 65536}),
                   load_arch(str(CONFIGS / "Qwen2.5-7B-Instruct")), h100())
    assert not est.fits and "max_position_embeddings=32768" in est.reasons[0]


def test_breakdown_adds_up_to_the_gpu():
    est = estimate(gpu_preset("Qwen2.5-7B-Instruct"), load_arch(str(CONFIGS / "Qwen2.5-7B-Instruct")), h100())
    assert sum(v for _label, v in est.breakdown) == pytest.approx(H100_GIB, abs=0.05)
    assert [label for label, _v in est.breakdown][:2] == ["weights", "activations"]
