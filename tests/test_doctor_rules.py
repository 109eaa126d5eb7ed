"""Doctor's static rules (VL1xx, VL2xx, VL3xx): one config that trips each rule and one that passes.

Architectures come from real config.json files (tests/fixtures/configs); machines are built by hand with
the probe's own types; estimates are computed by the real estimate().
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from vllm_launcher.doctor import environment
from vllm_launcher.doctor.engine import check_facts, check_preset
from vllm_launcher.doctor.findings import Facts
from vllm_launcher.doctor.registry import rules_by_code
from vllm_launcher.machine import system
from vllm_launcher.machine.hardware import GpuInfo, Hardware, NumaNode
from vllm_launcher.memory.arch import load_arch
from vllm_launcher.memory.estimate import estimate
from vllm_launcher.preset.schema import Preset

CONFIGS = Path(__file__).parent / "fixtures" / "configs"
GIB = 1024**3
QWEN = load_arch(str(CONFIGS / "Qwen2.5-7B-Instruct"))  # 28 heads, 4 KV heads, 32768 positions
LLAMA = load_arch(str(CONFIGS / "Llama-3.1-8B-Instruct"))  # 32 heads, 8 KV heads


def cpu_machine(node_total_gib: float = 64, node_free_gib: float = 60, ram_gib: float = 64,
                nodes: int = 1) -> Hardware:
    numa = [NumaNode(id=i, total_bytes=int(node_total_gib * GIB), free_bytes=int(node_free_gib * GIB))
            for i in range(nodes)]
    return Hardware(ram_total_bytes=int(ram_gib * GIB), ram_available_bytes=int(ram_gib * GIB * 0.95),
                    cpu_logical=8, numa_nodes=numa)


def gpu_machine(count: int = 1, total_gib: float = 80, free_gib: float | None = None,
                name: str = "NVIDIA H100 80GB HBM3", cc: tuple[int, int] = (9, 0)) -> Hardware:
    free = total_gib if free_gib is None else free_gib
    gpus = [GpuInfo(index=i, name=name, total_bytes=int(total_gib * GIB), free_bytes=int(free * GIB),
                    compute_capability=cc) for i in range(count)]
    return Hardware(gpus=gpus, cuda_available=True, ram_total_bytes=256 * GIB, ram_available_bytes=200 * GIB,
                    cpu_logical=32, numa_nodes=[NumaNode(id=0, total_bytes=256 * GIB, free_bytes=200 * GIB)])


def run(arch=QWEN, hw: Hardware | None = None, raw: bool = False, **fields) -> dict[str, list]:
    """Findings by code for a preset built from `fields` (raw: skip validation, as for a raw dict)."""
    fields.setdefault("name", "t")
    fields.setdefault("model", "Qwen/Qwen2.5-7B-Instruct")
    if raw:  # values the schema would reject, as in a raw dict: validate the rest, then set them
        preset = Preset(**{**fields, "gpu_memory_utilization": None}).model_copy(
            update={"gpu_memory_utilization": fields.get("gpu_memory_utilization")})
    else:
        preset = Preset(**fields)
    hw = hw if hw is not None else (gpu_machine() if preset.device == "cuda" else cpu_machine())
    est = estimate(preset, arch, hw) if arch is not None else None
    facts = Facts(preset=preset, arch=arch, hardware=hw, estimate=est, env=dict(preset.env),
                  vllm_distribution="vllm", vllm_version="0.32.0", vllm_checked=True,
                  tool_parsers=environment.tool_parsers(system.vllm_info().package_dir),
                  cpu_flags=frozenset({"avx512f", "avx512_bf16"}))
    by_code: dict[str, list] = {}
    for finding in check_facts(facts, "t"):
        by_code.setdefault(finding.code, []).append(finding)
    return by_code


def test_registry_codes_are_unique_and_well_formed():
    rules = rules_by_code()
    assert len(rules) >= 60
    for code, registered in rules.items():
        assert code == registered.code and code[:2] == "VL" and len(code) == 5
        assert registered.severity in ("error", "warning", "info")


# ---------------------------------------------------------------------------------------- VL1xx


def test_vl101_batched_below_len_error_when_chunked_prefill_off():
    found = run(max_model_len=8192, max_num_batched_tokens=2048, enable_chunked_prefill=False)["VL101"][0]
    assert found.severity == "error"
    assert "2048" in found.message and "8192" in found.message
    assert "max_num_batched_tokens: 8192" in found.fix


def test_vl101_info_when_chunked_prefill_is_on_and_passes_when_equal():
    assert run(max_model_len=8192, max_num_batched_tokens=2048)["VL101"][0].severity == "info"
    assert "VL101" not in run(max_model_len=8192, max_num_batched_tokens=8192, enable_chunked_prefill=False)


def test_vl102_batched_below_seqs():
    found = run(max_model_len=4096, max_num_batched_tokens=256, max_num_seqs=512)["VL102"][0]
    assert found.severity == "error" and "256" in found.message and "512" in found.message
    # Unset, vLLM clamps max_num_seqs to max_num_batched_tokens: no error.
    assert "VL102" not in run(max_model_len=4096, max_num_batched_tokens=64)
    # Explicit seqs above vLLM's CPU default batch (2048).
    assert "VL102" in run(device="cpu", max_model_len=1024, max_num_seqs=4096, kv_cache_space_gib=4)


def test_vl103_context_above_model_limit():
    found = run(max_model_len=65536)["VL103"][0]
    assert found.severity == "error" and "32768" in found.message and "max_model_len: 32768" in found.fix
    allowed = run(max_model_len=65536, env={"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"})["VL103"][0]
    assert allowed.severity == "warning"
    assert "VL103" not in run(max_model_len=32768)


def test_vl104_client_prompt_needs_room():
    too_small = run(max_model_len=4096, client_prompt_tokens=6500)["VL104"][0]
    assert too_small.severity == "error" and "max_model_len: 16384" in too_small.fix
    small = run(max_model_len=8192, client_prompt_tokens=6500)["VL104"][0]
    assert small.severity == "warning" and "1692 tokens" in small.message
    assert "VL104" not in run(max_model_len=16384, client_prompt_tokens=6500)


def test_vl105_tp_must_divide_attention_heads():
    found = run(tensor_parallel_size=8, hw=gpu_machine(8))["VL105"][0]
    assert "28 attention heads" in found.message and "4" in found.fix
    assert "VL105" not in run(tensor_parallel_size=4, hw=gpu_machine(4))


def test_vl106_tp_and_kv_heads():
    odd = LLAMA.model_copy(update={"num_kv_heads": 6})
    found = run(arch=odd, model="meta-llama/Llama-3.1-8B-Instruct", tensor_parallel_size=4,
                hw=gpu_machine(4))["VL106"][0]
    assert "6 KV heads" in found.message
    assert "VL106" not in run(arch=LLAMA, model="meta-llama/Llama-3.1-8B-Instruct", tensor_parallel_size=4,
                              hw=gpu_machine(4))


def test_vl107_more_ranks_than_gpus():
    found = run(tensor_parallel_size=2, hw=gpu_machine(1))["VL107"][0]
    assert "2 GPUs" in found.message and "1 GPU" in found.message
    assert "VL107" not in run(tensor_parallel_size=2, hw=gpu_machine(2))


def test_vl108_gpu_preset_on_cpu_machine():
    found = run(device="cuda", tensor_parallel_size=2, hw=cpu_machine())["VL108"][0]
    assert found.severity == "warning" and "2 GPUs" in found.message
    assert "VL108" not in run(device="cpu", kv_cache_space_gib=4)


def test_vl109_cpu_tp_needs_numa_nodes():
    found = run(device="cpu", tensor_parallel_size=2, kv_cache_space_gib=4,
                hw=cpu_machine(nodes=1))["VL109"][0]
    assert "NUMA" in found.message and "tensor_parallel_size: 1" in found.fix
    assert "VL109" not in run(device="cpu", tensor_parallel_size=2, kv_cache_space_gib=4,
                              hw=cpu_machine(nodes=2))


def test_vl110_bf16_needs_ampere():
    v100 = gpu_machine(1, 32, name="Tesla V100-SXM2-32GB", cc=(7, 0))
    found = run(dtype="bfloat16", hw=v100)["VL110"][0]
    assert "7.0" in found.message and "float16" in found.fix
    assert "VL110" not in run(dtype="bfloat16", hw=gpu_machine(1, 80, name="NVIDIA A100", cc=(8, 0)))
    assert "VL110" not in run(dtype="auto", hw=v100)


def test_vl111_cpu_half_precision():
    facts_kwargs = {"device": "cpu", "kv_cache_space_gib": 4, "dtype": "bfloat16"}
    preset = Preset(name="t", model="Qwen/Qwen2.5-7B-Instruct", **facts_kwargs)

    def with_flags(flags):
        facts = Facts(preset=preset, arch=QWEN, hardware=cpu_machine(), cpu_flags=frozenset(flags))
        return [f for f in check_facts(facts, "t") if f.code == "VL111"]

    assert with_flags({"avx2", "avx512f"})[0].severity == "warning"
    # AVX2 only (vLLM's _C_AVX2 kernels): bfloat16 serves, slowly; a warning, not a refusal
    avx2 = with_flags({"avx2"})[0]
    assert avx2.severity == "warning" and "AVX2 kernels" in avx2.message and "float32" in avx2.fix
    assert with_flags({"avx2", "avx512f", "avx512_bf16"})[0].severity == "info"
    assert "VL111" not in run(device="cpu", kv_cache_space_gib=4, dtype="float32")


def test_vl112_tool_calling_without_parser():
    found = run(tool_calling={"enabled": True})["VL112"][0]
    assert "tool_calling.parser: hermes" in found.fix
    assert "VL112" not in run(tool_calling={"enabled": True, "parser": "hermes"})


def test_vl113_parser_family_mismatch():
    found = run(tool_calling={"enabled": True, "parser": "mistral"})["VL113"][0]
    assert "hermes" in found.fix
    llama = run(arch=LLAMA, model="meta-llama/Llama-3.1-8B-Instruct",
                tool_calling={"enabled": True, "parser": "hermes"})["VL113"][0]
    assert "llama3_json" in llama.fix
    assert "VL113" not in run(tool_calling={"enabled": True, "parser": "hermes"})
    assert "VL113" not in run(model="mistralai/Codestral-22B-v0.1", arch=None,
                              tool_calling={"enabled": True, "parser": "mistral"})


def test_vl114_parser_without_enabled():
    assert run(tool_calling={"enabled": False, "parser": "hermes"})["VL114"][0].severity == "info"
    assert "VL114" not in run(tool_calling={"enabled": True, "parser": "hermes"})


def test_vl115_utilization_range_on_raw_values():
    assert "VL115" in run(raw=True, gpu_memory_utilization=1.5)
    assert "VL115" in run(raw=True, gpu_memory_utilization=0)
    assert "VL115" not in run(gpu_memory_utilization=0.9)


def test_vl116_exposed_without_api_key():
    found = run(host="0.0.0.0")["VL116"][0]
    assert found.severity == "warning" and "/health" in found.message
    assert "VL116" not in run(host="0.0.0.0", api_key_env="MY_KEY")
    assert "VL116" not in run(host="127.0.0.1")


def test_vl117_a_sleeping_preset_must_bind_loopback():
    found = run(sleep_when_idle=True, host="0.0.0.0", api_key_env="MY_KEY")["VL117"][0]
    assert found.severity == "error" and "/sleep" in found.message and "127.0.0.1" in found.fix
    assert "VL117" not in run(sleep_when_idle=True, host="127.0.0.1")
    assert "VL117" not in run(host="0.0.0.0")


def test_vl118_sleep_mode_is_cuda_only():
    found = run(sleep_when_idle=True, device="cpu", kv_cache_space_gib=4)["VL118"][0]
    assert found.severity == "warning" and "sleep_when_idle: false" in found.fix
    assert "VL118" not in run(sleep_when_idle=True)


def test_vl190_shows_the_whole_reason_the_model_is_unknown():
    from vllm_launcher.base.errors import LaunchError

    preset = Preset(name="t", model="nosuch-org/nosuch-model-7b", device="cpu", kv_cache_space_gib=1)
    with pytest.raises(LaunchError) as caught:
        load_arch(preset.model)
    found = next(f for f in check_preset(preset, cpu_machine()) if f.code == "VL190")
    assert " ".join(str(caught.value).split()) in found.message  # whole, never cut mid-word
    assert (found.severity == "info"
            and found.message.count("hf download") + found.fix.count("hf download") == 1)


def test_vl130_slow_cpu_inference_gets_the_guides_advice():
    big = run(device="cpu", kv_cache_space_gib=4, max_model_len=16384)["VL130"][0]  # Qwen2.5-7B
    assert big.severity == "info" and "7.6B parameters" in big.message
    assert "1.5B-3B" in big.fix and "max_tokens" in big.fix and "max_model_len" in big.fix
    small = load_arch("Qwen/Qwen2.5-Coder-1.5B-Instruct")
    long = run(small, device="cpu", model="Qwen/Qwen2.5-Coder-1.5B-Instruct", kv_cache_space_gib=4,
               max_model_len=32768)["VL130"][0]
    assert "max_model_len 32768" in long.message and "parameters" not in long.message
    assert "VL130" not in run(small, device="cpu", model="Qwen/Qwen2.5-Coder-1.5B-Instruct",
                              kv_cache_space_gib=4, max_model_len=16384)
    assert "VL130" not in run(device="cuda", max_model_len=32768)
    for name in ("cpu-test", "cpu-16k", "cpu-3b"):  # the guide's own CPU models and contexts
        from vllm_launcher.preset.schema import resolve

        preset = resolve(name).preset
        facts = Facts(preset=preset, arch=load_arch(preset.model), hardware=cpu_machine(),
                      env=dict(preset.env))
        assert "VL130" not in {f.code for f in check_facts(facts, name)}, name


# ---------------------------------------------------------------------------------------- VL2xx


def test_vl201_kv_cache_too_small_for_one_request():
    found = run(device="cpu", max_model_len=32768, kv_cache_space_gib=1)["VL201"][0]
    assert "32768" in found.message and "max_model_len:" in found.fix and "kv_cache_space_gib:" in found.fix
    assert "VL201" not in run(device="cpu", max_model_len=32768, kv_cache_space_gib=4)


def test_vl202_weights_do_not_fit():
    found = run(hw=gpu_machine(1, 12, name="NVIDIA RTX 3060"))["VL202"][0]
    assert "GiB" in found.message and "tensor_parallel_size" in found.fix
    assert "VL202" not in run(hw=gpu_machine(1, 80))


def test_vl203_cpu_kv_above_node_memory():
    found = run(device="cpu", kv_cache_space_gib=16, hw=cpu_machine(64, 8))["VL203"][0]
    assert found.severity == "error" and "16 GiB" in found.message
    assert "VL203" not in run(device="cpu", kv_cache_space_gib=2, hw=cpu_machine(64, 60))


def test_vl204_cpu_ram_short():
    found = run(device="cpu", kv_cache_space_gib=2, hw=cpu_machine(64, 60, ram_gib=10))["VL204"][0]
    assert "GiB of RAM" in found.message
    assert "VL204" not in run(device="cpu", kv_cache_space_gib=2, hw=cpu_machine(64, 60, ram_gib=64))


# (node 0 total GiB, node 0 free GiB): this machine (8.2/6.8 and 10.59/10.3 seen), a bit more, plenty.
NODE0_CASES = [(8.2, 6.8), (8.2, 7.9), (10, 9.5), (10.59, 10.3), (16, 15), (64, 60), (512, 500)]


@pytest.mark.parametrize("node_total_gib, node_free_gib", NODE0_CASES)
def test_vl205_takes_its_verdict_and_numbers_from_the_estimate(node_total_gib, node_free_gib):
    """`estimate` and `doctor` on the same Hardware value: VL205 (an error, never a warning) exactly when the
    estimate refuses vLLM's default CPU KV sizing, with the estimate's reasons and fix."""
    from vllm_launcher.preset.schema import resolve

    preset = resolve("cpu-16k").preset
    arch = load_arch(preset.model)
    hw = cpu_machine(node_total_gib, node_free_gib)
    est = estimate(preset, arch, hw)
    facts = Facts(preset=preset, arch=arch, hardware=hw, estimate=est, env=dict(preset.env))
    found = [f for f in check_facts(facts, "cpu-16k") if f.code == "VL205"]
    default_reasons = [r for r in est.reasons if r.startswith("kv_cache_space_gib is unset")]
    assert bool(found) == bool(default_reasons)
    assert any(f.severity == "error" for f in check_facts(facts, "cpu-16k")) == (not est.fits)
    if found:
        assert found[0].severity == "error"
        for reason in default_reasons:
            assert reason in found[0].message
        for fix in est.fixes:
            if fix.startswith("set kv_cache_space_gib (e.g."):
                assert fix in found[0].fix


def test_vl205_silent_when_the_kv_size_is_set():
    assert "VL205" not in run(device="cpu", max_model_len=2048, kv_cache_space_gib=2,
                              hw=cpu_machine(8.2, 6.8))


def test_vl206_gpu_busy():
    found = run(hw=gpu_machine(1, 80, free_gib=20))["VL206"][0]
    assert "20.0 of 80.0 GiB" in found.message and "gpu_memory_utilization: 0.23" in found.fix
    assert "VL206" not in run(hw=gpu_machine(1, 80, free_gib=79))


# ---------------------------------------------------------------------------------------- VL3xx


def _facts(preset: Preset, **kwargs) -> Facts:
    return Facts(preset=preset, arch=QWEN, hardware=cpu_machine(), **kwargs)


def _codes(facts: Facts) -> dict[str, list]:
    by_code: dict[str, list] = {}
    for finding in check_facts(facts, "t"):
        by_code.setdefault(finding.code, []).append(finding)
    return by_code


def test_vl301_port_in_use_names_the_process():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        preset = Preset(name="t", model="Qwen/Qwen2.5-7B-Instruct", device="cpu", port=port,
                        kv_cache_space_gib=4)
        found = check_preset(preset, cpu_machine())
        taken = [f for f in found if f.code == "VL301"]
        assert taken and f"pid {os.getpid()}" in taken[0].message and f"--port {port + 1}" in taken[0].fix
    assert not [f for f in check_preset(preset, cpu_machine()) if f.code == "VL301"]


def test_vl309_host_not_an_address_of_this_machine():
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of this machine.
    preset = Preset(name="t", model="Qwen/Qwen2.5-7B-Instruct", device="cpu", host="192.0.2.1", port=8000,
                    kv_cache_space_gib=4, api_key_env="K")
    found = [f for f in check_preset(preset, cpu_machine()) if f.code in ("VL301", "VL309")]
    assert [f.code for f in found] == ["VL309"] and found[0].severity == "error"
    assert "192.0.2.1" in found[0].message and "host" in found[0].fix
    local = preset.model_copy(update={"host": "127.0.0.1", "port": 1})  # in use or refused, but ours
    assert not [f for f in check_preset(local, cpu_machine()) if f.code == "VL309"]


def test_vl302_vllm_missing():
    preset = Preset(name="t", model="m", device="cpu")
    assert "VL302" in _codes(_facts(preset, vllm_checked=True, vllm_version=None))
    assert "VL302" not in _codes(_facts(preset, vllm_checked=True, vllm_version="0.32.0"))


def test_vl303_vllm_too_old_for_a_flag():
    tools = Preset(name="t", model="m", tool_calling={"enabled": True, "parser": "hermes"})
    old = _codes(_facts(tools, vllm_checked=True, vllm_version="0.5.4"))["VL303"]
    assert sorted(f.message.split()[3].rstrip(",") for f in old) == ["--enable-auto-tool-choice",
                                                                   "--tool-call-parser"]
    assert all("0.6.0" in f.fix for f in old)
    kv = Preset(name="t", model="m", device="cuda", kv_cache_space_gib=8)
    assert "--kv-cache-memory-bytes" in _codes(_facts(kv, vllm_version="0.10.1"))["VL303"][0].message
    assert "VL303" not in _codes(_facts(tools, vllm_version="0.32.0"))


@pytest.mark.vllm  # reads the installed vLLM
def test_vl304_parser_not_in_installed_vllm():
    installed = environment.tool_parsers(system.vllm_info().package_dir)
    assert {"hermes", "mistral", "llama3_json", "llama4_json", "deepseek_v3", "qwen3_coder"} <= installed
    bad = Preset(name="t", model="Qwen/Qwen2.5-7B-Instruct",
                 tool_calling={"enabled": True, "parser": "hermess"})
    found = _codes(_facts(bad, vllm_version="0.32.0", tool_parsers=installed))["VL304"][0]
    assert "did you mean hermes" in found.message
    good = bad.model_copy(update={"tool_calling": bad.tool_calling.model_copy(update={"parser": "hermes"})})
    assert "VL304" not in _codes(_facts(good, vllm_version="0.32.0", tool_parsers=installed))


def test_parser_names_from_older_register_module_sources():
    old = ('@ToolParserManager.register_module(["hermes"])\nclass A: ...\n'
           '@ToolParserManager.register_module("mistral")\nclass B: ...\n')
    assert environment.parse_tool_parser_names([old]) == {"hermes", "mistral"}
