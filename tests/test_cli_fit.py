"""The `probe`, `estimate` and `fit` commands, run as a user runs them (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

FIXTURES = Path(__file__).parent / "fixtures"


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vllm_launcher", *args], capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_probe_json_loads_back(tmp_path):
    done = run("probe", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["ram_total_bytes"] > 0 and "numa_nodes" in data
    human = run("probe")
    assert human.returncode == 0 and "RAM:" in human.stdout and "vLLM:" in human.stdout


def test_estimate_json_keys_and_exit_codes():
    done = run("estimate", "cpu-16k", "--kv-cache", "8", "--json",
               "--hardware", str(FIXTURES / "hardware" / "cpu-2core-24gib.json"))
    data = json.loads(done.stdout)
    for key in ("weights_gib", "kv_bytes_per_token", "kv_cache_gib", "kv_cache_tokens", "max_concurrency",
                "ram_needed_gib", "fits", "reasons", "breakdown"):
        assert key in data
    # 8 GiB of KV is more than NUMA node 0 has here (8.2 GiB total): refused, exit 1, JSON still printed.
    assert data["fits"] is False and done.returncode == 1
    ok = run("estimate", "cpu-16k", "--kv-cache", "2", "--json",
             "--hardware", str(FIXTURES / "hardware" / "cpu-2core-24gib.json"))
    assert ok.returncode == 0 and json.loads(ok.stdout)["kv_cache_tokens"] == 2 * (1 << 30) // 57344 // 128 * 128


def test_estimate_hypothetical_gpu_human_output_has_a_bar():
    done = run("estimate", "gpu-7b", "--device", "cuda", "--gpus", "1", "--gpu-mem-gib", "79.19")
    assert done.returncode == 0, done.stderr
    assert "KV cache" in done.stdout and "[WWW" in done.stdout and "fits" in done.stdout


def test_estimate_model_without_preset():
    done = run("estimate", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpus", "1", "--gpu-mem-gib", "79.19",
               "--max-model-len", "8192", "--gpu-memory-utilization", "0.95", "--json")
    assert done.returncode == 0, done.stderr
    assert abs(json.loads(done.stdout)["kv_cache_tokens"] / 476_016 - 1) < 0.10


def test_estimate_bad_input_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "hw.json"
    bad.write_text("{")
    done = run("estimate", "gpu-7b", "--hardware", str(bad))
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    nothing = run("estimate")
    assert nothing.returncode == 2 and "--model" in nothing.stderr
    unknown = run("estimate", "--model", "nobody/nothing", "--device", "cpu")
    assert unknown.returncode == 1 and "config.json" in unknown.stderr and "Traceback" not in unknown.stderr


def test_fit_prints_yaml_and_saves_atomically(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    args = ("fit", "Qwen/Qwen2.5-Coder-7B-Instruct", "--gpus", "1", "--gpu-mem-gib", "24", "--concurrency", "2")
    done = run(*args, "--save", "my-7b", env=env)
    assert done.returncode == 0, done.stderr
    saved = tmp_path / "vllm-launch" / "presets" / "my-7b.yaml"
    data = yaml.safe_load(saved.read_text())
    assert data["model"] == "Qwen/Qwen2.5-Coder-7B-Instruct" and data["tool_calling"]["parser"] == "hermes"
    assert yaml.safe_load(done.stdout)["max_model_len"] == data["max_model_len"]
    again = run(*args, "--save", "my-7b", env=env)
    assert again.returncode == 2 and "--force" in again.stderr
    assert run(*args, "--save", "my-7b", "--force", env=env).returncode == 0
    assert [p.name for p in saved.parent.iterdir()] == ["my-7b.yaml"]  # no temp files left
    # The saved preset is a working preset: estimate accepts it.
    check = run("estimate", "my-7b", "--gpus", "1", "--gpu-mem-gib", "24", "--json", env=env)
    assert check.returncode == 0 and json.loads(check.stdout)["fits"] is True
