"""The load generator itself, in one run: against an instant upstream (the timed fake of tests/ with no
prefill and no gaps between tokens) it must not be the bottleneck. Next to vLLM's benchmark client
(`vllm.benchmarks.serve`, the library) on the same upstream in the same run:

- sustained requests per second at --concurrency, ours and vLLM's, and their ratio (target: >= 0.9)
- per-request overhead: the mean E2EL of a request whose server answers at once, ours and vLLM's (ratio
  target <= 1.1)

Client and upstream share this machine's cores, so both figures are floors on a small machine; the ratios
are what to read. Where vLLM is not installed only our figures are printed.

    python bench/bench_loadgen.py [--requests 400] [--concurrency 16] [--tokens 8]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]


def ours(base_url: str, requests: int, concurrency: int, tokens: int) -> dict:
    from vllm_launcher.benchmark import client, metrics, workloads

    target = client.Target(base_url, "timed")
    load = workloads.build(
        "random",
        workloads.Shape(requests=requests, input_tokens=32, output_tokens=tokens),
        workloads.Tokens(),
        seed=0,
    )
    client.probe_blocking(target)
    run = client.run_blocking(target, load, client.LoadOptions(concurrency=concurrency, ignore_eos=True))
    return metrics.own_figures(run.records, run.duration_s, {})


def theirs(base_url: str, requests: int, concurrency: int, tokens: int, tokenizer: Path) -> dict | None:
    try:
        from timed_server import vllm_bench
    except ImportError:
        return None
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return vllm_bench(
                base_url,
                "timed",
                tokenizer,
                "--dataset-name",
                "random",
                "--random-input-len",
                "32",
                "--random-output-len",
                str(tokens),
                "--num-prompts",
                str(requests),
                "--max-concurrency",
                str(concurrency),
                "--seed",
                "0",
            )
    except ImportError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=8)
    args = parser.parse_args()
    from timed_server import TimedServer, write_tokenizer

    with (
        tempfile.TemporaryDirectory() as tmp,
        TimedServer(model="timed", ttft_ms=0, itl_ms=0, args=["--max-num-seqs", "1024"]) as server,
    ):
        tokenizer = write_tokenizer(Path(tmp) / "tokenizer")
        ours(server.base_url, 32, args.concurrency, args.tokens)  # warm up both clients and the upstream
        theirs(server.base_url, 32, args.concurrency, args.tokens, tokenizer)
        mine = ours(server.base_url, args.requests, args.concurrency, args.tokens)
        vllms = theirs(server.base_url, args.requests, args.concurrency, args.tokens, tokenizer)
    rows = {
        "requests_per_s": (mine["request_throughput"], vllms and vllms["request_throughput"]),
        "mean_e2el_ms": (mine["mean_e2el_ms"], vllms and vllms["mean_e2el_ms"]),
        "p99_e2el_ms": (mine["p99_e2el_ms"], vllms and vllms["p99_e2el_ms"]),
        "output_tokens_per_s": (mine["output_throughput"], vllms and vllms["output_throughput"]),
    }
    print(
        f"instant upstream, {args.requests} requests, {args.concurrency} in flight, {args.tokens} tokens each"
    )
    print(f"{'figure':<22}{'ours':>12}{'vLLM client':>14}{'ratio':>8}")
    for name, (a, b) in rows.items():
        ratio = f"{a / b:.2f}" if b else "-"
        print(f"{name:<22}{a:>12.2f}{(f'{b:.2f}' if b else '-'):>14}{ratio:>8}")
    if vllms:
        print(
            json.dumps(
                {
                    "throughput_ratio": mine["request_throughput"] / vllms["request_throughput"],
                    "throughput_target": ">= 0.9",
                    "overhead_ratio": mine["mean_e2el_ms"] / vllms["mean_e2el_ms"],
                    "overhead_target": "<= 1.1",
                }
            )
        )


if __name__ == "__main__":
    main()
