"""One benchmark client in a process of its own, run in lockstep with another: `python lockstep_bench.py
vllm|ours`. Per round it reads a job (one JSON line), prepares it (tokenizer, prompts), prints `ready`,
waits for a `go` line, runs, and prints the result dict as one JSON line. Used by tests/test_bench_vllm.py
through `LockstepClients`: two clients measuring the same server at the same time see the same batches."""

from __future__ import annotations

import asyncio
import gc
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def say(line: str) -> None:
    """To the real stdout: vLLM's benchmark prints to sys.stdout, which run_vllm_bench redirects."""
    assert sys.__stdout__ is not None
    sys.__stdout__.write(line + "\n")
    sys.__stdout__.flush()


def wait_for_go() -> None:
    gc.collect()  # the garbage of preparing is not collected during the run, in either client
    say("ready")
    assert sys.stdin.readline().strip() == "go"


def without_env_lookups() -> None:
    """vLLM's client opens its session with trust_env=True: aiohttp then looks up proxy variables and
    ~/.netrc for every request, inside the span timed as TTFT. Measured here against the demo server's
    /health: 1.5 ms a request with it, 0.6 ms without; on a loaded 2-core machine it read as ~4 ms of a
    20 ms TTFT (ours 0.8 of vLLM's, every round). That is the client's own cost, not a different reading
    of the server, so vLLM's client runs here without it (the test's server is 127.0.0.1: no proxy)."""
    import aiohttp

    session = aiohttp.ClientSession

    def plain_session(*args: Any, **kwargs: Any) -> Any:
        kwargs["trust_env"] = False
        return session(*args, **kwargs)

    aiohttp.ClientSession = plain_session  # type: ignore[misc]


def vllms(argv: list[str]) -> dict[str, Any]:
    """vLLM's `bench serve` (the library); the gate sits where its own `benchmark` coroutine begins, after
    its tokenizer and prompts are made."""
    import vllm.benchmarks.serve as serve
    from timed_server import run_vllm_bench

    original = serve.benchmark

    async def gated(*args: Any, **kwargs: Any) -> Any:
        await asyncio.to_thread(wait_for_go)
        return await original(*args, **kwargs)

    serve.benchmark = gated
    try:
        return run_vllm_bench(argv)
    finally:
        serve.benchmark = original


def ours(job: dict[str, Any]) -> dict[str, Any]:
    """vllm-launch's client and figures, as `bench --vllm-metrics` runs them for `-w random`."""
    from vllm_launcher.benchmark import client, metrics, workloads

    tokens = workloads.Tokens(Path(job["tokenizer"]) / "tokenizer.json")
    shape = workloads.Shape(
        requests=job["requests"], input_tokens=job["input_tokens"], output_tokens=job["output_tokens"]
    )
    workload = workloads.build("random", shape, tokens, job["seed"])
    options = client.LoadOptions(concurrency=job["concurrency"], ignore_eos=True, seed=job["seed"])
    target = client.Target(job["base_url"], job["model"])
    wait_for_go()
    run = client.run_blocking(target, workload, options)
    return metrics.figures(run.records, run.duration_s, {}, prefer_vllm=True)


def main(kind: str) -> None:
    # Everything either client imports, imported before the first round: our figures are vLLM's
    # calculate_metrics, and importing vLLM (7 CPU-seconds here) while the other client is still running
    # would slow the server under it. Then frozen, so that no collection walks vLLM's and torch's objects.
    import vllm.benchmarks.serve  # noqa: F401

    if kind == "vllm":
        without_env_lookups()
    else:
        import vllm_launcher.benchmark.client
        import vllm_launcher.benchmark.metrics  # noqa: F401
    gc.collect()
    gc.freeze()
    for line in sys.stdin:
        job = json.loads(line)
        result = vllms(job) if kind == "vllm" else ours(job)
        say(json.dumps({k: v for k, v in result.items() if not isinstance(v, list)}, default=float))


if __name__ == "__main__":
    main(sys.argv[1])
