"""scripts/gpu-check.sh, the GPU machine's check, from this machine without a GPU: it refuses clearly
without nvidia-smi or without the project's dependencies, and runs its whole course (probe, comparison,
presets, fit) against tests/fake_nvidia_smi, a stand-in that reports two H100s (and fails on demand)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from cli_helpers import REPO

SCRIPT = REPO / "scripts" / "gpu-check.sh"
FAKE_SMI = REPO / "tests" / "fake_nvidia_smi"
PLAIN_PATH = "/usr/local/bin:/usr/bin:/bin"


def _run(tmp_path: Path, path: str, python: str = sys.executable, **env: str) -> subprocess.CompletedProcess:
    full = {"HOME": str(tmp_path), "PATH": path, "PYTHON": python, "GPU_CHECK_PRESETS": "gpu-7b gpu-32b-tp2",
            "GPU_CHECK_MODELS": "Qwen/Qwen2.5-Coder-32B-Instruct", **env}
    return subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], env=full, capture_output=True,
                          text=True, timeout=300, check=False)


def test_without_nvidia_smi_it_says_so_and_exits_2(tmp_path):
    assert shutil.which("nvidia-smi", path=PLAIN_PATH) is None  # this machine has no GPU
    done = _run(tmp_path, PLAIN_PATH)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("gpu-check: nvidia-smi not found on PATH") and done.stderr.count("\n") == 1


def test_without_the_projects_dependencies_it_says_which(tmp_path):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True,
                   timeout=120)
    done = _run(tmp_path, f"{FAKE_SMI}:{PLAIN_PATH}", python=str(tmp_path / "bare" / "bin" / "python"))
    assert done.returncode == 2 and "lacks vllm-launch's dependencies (pydantic" in done.stderr


def test_a_failing_nvidia_smi_is_reported(tmp_path):
    done = _run(tmp_path, f"{FAKE_SMI}:{PLAIN_PATH}", FAKE_SMI_FAIL="1")
    assert done.returncode == 1 and "nvidia-smi failed: Failed to initialize NVML" in done.stdout


def test_the_whole_check_against_two_reported_h100s(tmp_path):
    done = _run(tmp_path, f"{FAKE_SMI}:{os.path.dirname(sys.executable)}:{PLAIN_PATH}")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert "probe: 2 GPU(s) via nvidia-smi; nvidia-smi: 2" in out  # torch here has no CUDA: its fallback
    assert "GPU 1: 'NVIDIA H100 80GB HBM3' vs 'NVIDIA H100 80GB HBM3'; total 81559 vs 81559 MiB" in out
    assert "MISMATCH" not in out and "FAILED" not in out
    for step in ("render: exit 0", "estimate: exit 0", "doctor: exit 0"):
        assert out.count(step) == 2, step
    assert "-- fit Qwen/Qwen2.5-Coder-32B-Instruct: exit 0" in out
    assert "gpu-check: 0 problem(s)" in out
    assert (tmp_path / "out" / "probe.json").is_file()
