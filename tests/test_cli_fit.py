"""The `probe`, `estimate` and `fit` commands through the real CLI entry point (in this process; `probe`
also once as a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

FIXTURES = Path(__file__).parent / "fixtures"


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    from cli_helpers import run_in_process

    return run_in_process(list(args), {**os.environ, **(env or {})})


def test_probe_json_loads_back(tmp_path):
    done = subprocess.run([sys.executable, "-m", "vllm_launcher", "probe", "--json"], capture_output=True,
                          text=True, check=False, timeout=120)
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
    assert (ok.returncode == 0
            and json.loads(ok.stdout)["kv_cache_tokens"] == 2 * (1 << 30) // 57344 // 128 * 128)


def test_estimate_hypothetical_gpu_human_output_has_a_bar():
    done = run("estimate", "gpu-7b", "--device", "cuda", "--gpus", "1", "--gpu-mem-gib", "79.19")
    assert done.returncode == 0, done.stderr
    assert "KV cache" in done.stdout and "[WWW" in done.stdout and "fits" in done.stdout


def test_estimate_model_without_preset():
    done = run("estimate", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpus", "1",
               "--gpu-mem-gib", "79.19", "--max-model-len", "8192",
               "--gpu-memory-utilization", "0.95", "--json")
    assert done.returncode == 0, done.stderr
    assert abs(json.loads(done.stdout)["kv_cache_tokens"] / 476_016 - 1) < 0.10


def test_estimate_bad_input_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "hw.json"
    bad.write_text("{")
    done = run("estimate", "gpu-7b", "--hardware", str(bad))
    assert (done.returncode == 2 and "Traceback" not in done.stderr
            and len(done.stderr.strip().splitlines()) == 1)
    nothing = run("estimate")
    assert nothing.returncode == 2 and "--model" in nothing.stderr
    unknown = run("estimate", "--model", "nobody/nothing", "--device", "cpu")
    assert unknown.returncode == 2 and "config.json" in unknown.stderr and "Traceback" not in unknown.stderr


def test_fit_prints_yaml_and_saves_atomically(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    args = ("fit", "Qwen/Qwen2.5-Coder-7B-Instruct", "--gpus", "1", "--gpu-mem-gib", "24",
            "--concurrency", "2")
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


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr


def test_fit_bad_save_name_is_one_line_exit_2(tmp_path):
    done = run("fit", "Qwen/Qwen2.5-Coder-1.5B-Instruct", "--save", "../evil",
               env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert done.returncode == 2 and "--save" in one_line_error(done) and "letters, digits" in done.stderr
    assert not (tmp_path / "vllm-launch").exists() and not (tmp_path / "evil.yaml").exists()


def test_unknown_model_is_bad_input_exit_2():
    for args in (("estimate", "nonexistent/model"), ("fit", "nonexistent/model"),
                 ("estimate", "--model", "nobody/nothing", "--device", "cpu")):
        done = run(*args)
        assert done.returncode == 2 and "config.json" in one_line_error(done), (args, done.stderr)


def test_fit_context_above_the_model_limit_is_exit_2():
    done = run("fit", "Qwen/Qwen2.5-Coder-7B-Instruct", "--context", "10000000", "--gpus", "1",
               "--gpu-mem-gib", "80")
    assert done.returncode == 2 and "32768" in one_line_error(done)
    assert "VLLM_ALLOW_LONG_MAX_MODEL_LEN" in done.stderr and "--context" in done.stderr


def test_estimate_shows_the_architecture_source_whole():
    done = run("estimate", "gpu-7b", "--gpus", "1", "--gpu-mem-gib", "79.19")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())  # wrapped lines joined back
    source = json.loads(run("estimate", "gpu-7b", "--gpus", "1", "--gpu-mem-gib", "79.19",
                            "--json").stdout)["arch_source"]
    assert " ".join(source.split()) in text


def test_estimate_cuda_preset_without_a_gpu_says_so():
    done = run("estimate", "gpu-7b", "--hardware", str(FIXTURES / "hardware" / "cpu-2core-24gib.json"))
    assert done.returncode == 1
    assert "no GPU" in done.stdout and "--device cuda --gpus N --gpu-mem-gib X" in done.stdout
    assert "--hardware FILE" in done.stdout and "DOES NOT FIT" in done.stdout
    assert "0.92 x 0.0" not in done.stdout and "largest max_model_len" not in done.stdout
    data = json.loads(run("estimate", "gpu-7b", "--json",
                          "--hardware", str(FIXTURES / "hardware" / "cpu-2core-24gib.json")).stdout)
    assert data["fits"] is False and any("no GPU" in r for r in data["reasons"])


def test_fit_describes_all_gpus_and_the_tp_used():
    done = run("fit", "meta-llama/Llama-3.3-70B-Instruct", "--device", "cuda", "--gpus", "8",
               "--gpu-mem-gib", "80")
    assert done.returncode == 0, done.stderr
    data = yaml.safe_load(done.stdout)
    assert data["max_model_len"] == 131072 and data["tensor_parallel_size"] == 4
    assert "8 x 80.0 GiB GPU" in data["description"] and "TP 4" in data["description"]
