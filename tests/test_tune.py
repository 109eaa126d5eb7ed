"""`vllm-launch tune`: the grid bounded by the estimate, and a real sweep over the timed fake vLLM started
through the supervisor, whose timing depends on the settings it is given: tune must pick the candidate the
timing makes best under the SLO (and a different one without), count a failed start as a row, leave
nothing behind, and save the choice as a preset that extends the tuned one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cli_helpers import run_cli
from conftest import free_port, write_preset
from test_bench import no_servers_left, timed_env

from vllm_launcher.base.errors import ConfigError
from vllm_launcher.benchmark import tune
from vllm_launcher.machine.hardware import hypothetical
from vllm_launcher.preset.schema import resolve

CPU = hypothetical("cpu", 1, 0, ram_gib=24)


def test_the_kv_cache_bounds_the_grid():
    demo = resolve("demo").preset  # 1 GiB of KV: 1,048,576 tokens of the tiny model
    kept, left, how = tune.grid(demo, CPU, 100_000, None, None, False, False, 100)
    assert {c.settings["max_num_seqs"] for c in kept} == {1, 2, 4, 8}  # 8 x 100,000 fit, 16 x do not
    assert all(c.kv_cache_tokens == 1_048_576 for c in kept)
    assert {c.settings["max_num_seqs"] for c in left} == {16, 32, 64}
    assert "KV cache holds 1048576 tokens, not 16 x 100000" in left[0].why_not and "estimate" in how


def test_an_unknown_model_gets_the_default_grid_and_vllms_refusals_are_left_out():
    preset = resolve("demo", [("--model", "model", "nobody/unknown-model")]).preset
    kept, _left, how = tune.grid(preset, CPU, 1000, None, None, False, False, 100)
    assert "default grid" in how
    assert {(c.settings["max_num_seqs"], c.settings["max_num_batched_tokens"]) for c in kept} == {
        (n, b) for n in tune.DEFAULT_SEQS for b in tune.DEFAULT_BATCHED
    }
    kept, left, _ = tune.grid(preset, CPU, 1000, [8, 16], [8, 4096], True, True, 100)
    why = {c.label(): c.why_not for c in left}
    assert "below max_num_seqs 16" in why["seqs=16 batched=8"]
    assert "must hold the context (2048)" in why["seqs=8 batched=8 no-chunked-prefill"]
    labels = {c.label() for c in kept}
    assert {"seqs=8 batched=4096 no-prefix-caching", "seqs=16 batched=4096 no-chunked-prefill"} <= labels


def test_the_cap_on_candidates_keeps_an_even_spread():
    preset = resolve("demo").preset
    kept, left, _ = tune.grid(preset, CPU, 100, None, None, False, False, 5)
    assert len(kept) == 5 and any("beyond --max-candidates 5" in (c.why_not or "") for c in left)
    assert kept[0].settings["max_num_seqs"] == 1 and kept[-1].settings["max_num_seqs"] > 8


@pytest.mark.parametrize("text,words", [("2,x", "expected whole numbers"), ("0", "between 1 and")])
def test_bad_lists(text, words):
    with pytest.raises(ConfigError, match=words):
        tune.parse_list(text, "--max-num-seqs")


def test_choice_rules():
    def candidate(goodput, throughput, tokens, failed=0):
        c = tune.Candidate({"max_num_seqs": 1, "max_num_batched_tokens": 512})
        c.result = {
            "completed": 10,
            "failed": failed,
            "request_goodput": goodput,
            "request_throughput": throughput,
            "output_throughput": tokens,
        }
        return c

    a, b, c = candidate(5.0, 5.0, 100), candidate(6.0, 9.0, 300), candidate(4.0, 4.0, 400, failed=1)
    assert tune.choose([a, b, c], {"ttft": 100}) is a  # b: a third of its requests miss; c: failures
    assert tune.choose([a, b, c], {}) is b  # highest output throughput of those with no failure
    assert tune.choose([c], {}) is None


# ------------------------------------------------------------------------ a sweep over the timed fake

# itl = 10 + 5 x seqs + 4 x batched/1024 ms; prefill = 20 + 80 x ceil(512 words / batched) ms; 8 requests,
# 4 at a time, 8 tokens each. Without an SLO seqs=4 wins (4 at once), batched=1024 (one prefill chunk);
# under tpot <= 27 ms only seqs <= 2 qualify, and seqs=2 batched=1024 is the fastest of them.
TIMING = {"ttft_ms": 20, "chunk_ms": 80, "itl_ms": 10, "itl_per_seq_ms": 5, "itl_per_ktok_ms": 4}
GRID = [
    "--max-num-seqs",
    "1,2,4",
    "--max-num-batched-tokens",
    "256,1024",
    "-n",
    "8",
    "-c",
    "4",
    "--input-tokens",
    "512",
    "--output-tokens",
    "8",
]


def tune_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vllm_launcher", "tune", "timed", *GRID, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def settings_of(entry: dict) -> tuple[int, int]:
    return entry["settings"]["max_num_seqs"], entry["settings"]["max_num_batched_tokens"]


def test_tune_picks_what_the_timing_makes_best_under_the_slo(isolated_xdg):
    env = timed_env(isolated_xdg, reject_seqs=1, **TIMING)  # seqs=1 fails to start: a row, not a crash
    write_preset(env, "timed", free_port())
    result = tune_cli(env, "--slo", "tpot:27", "--json", "--save", "timed-tuned")
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert settings_of(data["best"]) == (2, 1024), json.dumps(data["candidates"], indent=1)[:3000]
    rows = {settings_of(c): c for c in data["candidates"]}
    assert set(rows) == {(n, b) for n in (1, 2, 4) for b in (256, 1024)}
    assert all(rows[(1, b)]["error"] and "did not start" in rows[(1, b)]["error"] for b in (256, 1024))
    assert not rows[(4, 1024)]["meets_slo"] and rows[(2, 256)]["meets_slo"]
    assert rows[(4, 1024)]["result"]["mean_tpot_ms"] > 27 > rows[(2, 1024)]["result"]["mean_tpot_ms"]
    no_servers_left(env)

    saved = Path(env["XDG_CONFIG_HOME"]) / "vllm-launch" / "presets" / "timed-tuned.yaml"
    preset = yaml.safe_load(saved.read_text())
    assert preset["extends"] == "timed" and preset["max_num_seqs"] == 2
    assert preset["max_num_batched_tokens"] == 1024 and "tok/s" in preset["description"]
    shown = run_cli(["show", "timed-tuned"], env)
    assert shown.returncode == 0 and "max_num_seqs: 2" in shown.stdout, shown.stderr


def test_without_an_slo_tune_picks_the_highest_throughput(isolated_xdg):
    env = timed_env(isolated_xdg, **TIMING)
    write_preset(env, "timed", free_port())
    result = tune_cli(env)
    assert result.returncode == 0, result.stdout + result.stderr
    best = next(line for line in result.stdout.splitlines() if line.startswith("best: "))
    assert best == "best: seqs=4 batched=1024", result.stdout
    assert "CANDIDATE" in result.stdout and result.stdout.count("seqs=") >= 6
    no_servers_left(env)


@pytest.mark.parametrize(
    "args,words",
    [
        (["--max-num-seqs", "x"], "--max-num-seqs: expected whole numbers"),
        (["-c", "1,2"], "one level"),
        (["--slo", "speed:3"], "unknown SLO key"),
        (["--save", "timed"], "give it another name"),
        (["--save", "bad name"], "not a preset name"),
        (["--input-tokens", "5000"], "does not fit timed's max_model_len (2048)"),
    ],
)
def test_bad_tune_input_is_one_line(isolated_xdg, args, words):
    write_preset(isolated_xdg, "timed", free_port(), max_model_len=2048)
    result = run_cli(["tune", "timed", *args], isolated_xdg)
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr, result.stderr


def test_ctrl_c_prints_the_candidates_so_far_and_stops_the_server(isolated_xdg):
    import signal
    import time

    env = timed_env(isolated_xdg, ttft_ms=5, itl_ms=50)
    write_preset(env, "timed", free_port())
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vllm_launcher",
            "tune",
            "timed",
            "--max-num-seqs",
            "2,4",
            "--max-num-batched-tokens",
            "1024",
            "-n",
            "8",
            "-c",
            "2",
            "--output-tokens",
            "20",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = Path(env["XDG_STATE_HOME"]) / "vllm-launch" / "logs"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # the second candidate's server has started
        if sum(f.read_text().count("Starting vLLM server") for f in log.glob("**/*.log")) >= 2:
            break
        time.sleep(0.2)
    time.sleep(1.5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, out + err
    assert "interrupted" in err and "Traceback" not in err
    assert "seqs=2 batched=1024" in out and "seqs=4 batched=1024" in out  # the table, as far as it got
    no_servers_left(env)
