"""Gateway figures, in one run: what the gateway adds in front of a fast local upstream (an aiohttp server
answering at once), and what it adds to a cold start (the fake vLLM of tests/fake_vllm).

- added latency of small non-streaming requests, p50 and p99 (gateway minus direct, one client, keep-alive)
- time to first byte of a stream, direct and through the gateway
- throughput at 32 concurrent clients, through the gateway as a share of direct
- a cold start: from the request to the answer, against the server's own start (spawn to /health 200)

Targets (the issue's): added p50 <= 1 ms, p99 <= 5 ms, throughput >= 90% of direct, a cold start adds
<= 100 ms to the server's own time to ready. Ratios to the targets are printed (<= 1 is good). Client,
gateway and upstream share this machine's cores, so the throughput figure is a floor on small machines.

    python bench/bench_gateway.py [--requests 2000] [--seconds 5] [--cold-starts 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FAKE = REPO / "tests" / "fake_vllm"
CHAT = {"model": "bench", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
ANSWER = json.dumps({"id": "chatcmpl-bench", "object": "chat.completion", "model": "bench",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                                  "finish_reason": "stop"}]}).encode()


SLOW_MS = 20
SERVICE_S = float(os.environ.get("BENCH_SERVICE_MS", "0")) / 1000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------------- the upstream


def serve_upstream(port: int) -> None:
    """A fast OpenAI-shaped server: a JSON answer at once; a stream of 8 events, the first at once."""
    from aiohttp import web

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if SERVICE_S:
            await asyncio.sleep(SERVICE_S)  # time the server spends elsewhere (a GPU), not on this CPU
        if not body.get("stream"):
            return web.Response(body=ANSWER, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index in range(8):
            await response.write(f'data: {{"index": {index}}}\n\n'.encode())
            await asyncio.sleep(0.002)
        await response.write(b"data: [DONE]\n\n")
        return response

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "bench", "object": "model"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def wait_http(url: str, timeout_s: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not answer within {timeout_s} s")


# ---------------------------------------------------------------------------------------- measures


async def latencies(session, url: str, count: int) -> list[float]:
    found = []
    for _ in range(count):
        began = time.perf_counter()
        async with session.post(url, json=CHAT) as response:
            await response.read()
            assert response.status == 200, response.status
        found.append(time.perf_counter() - began)
    return found


async def first_bytes(session, url: str, count: int) -> list[float]:
    found = []
    for _ in range(count):
        began = time.perf_counter()
        async with session.post(url, json={**CHAT, "stream": True}) as response:
            await response.content.readany()
            found.append(time.perf_counter() - began)
            await response.read()
    return found


async def throughput(url: str, clients: int, seconds: float, model: str = "bench") -> float:
    import aiohttp

    done = 0
    stop_at = time.perf_counter() + seconds

    async def client(session) -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            async with session.post(url, json={**CHAT, "model": model}) as response:
                await response.read()
            done += 1

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        began = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        return done / (time.perf_counter() - began)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def proxy_figures(direct: str, gateway: str, slow_upstream: str, requests: int,
                        seconds: float) -> dict[str, float]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for url in (direct, gateway):  # warm the connections and the gateway's route
            await latencies(session, url, 50)
        direct_lat: list[float] = []
        gateway_lat: list[float] = []
        block = max(1, requests // 10)
        for _ in range(10):  # interleaved blocks: drift on the machine hits both alike
            direct_lat += await latencies(session, direct, block)
            gateway_lat += await latencies(session, gateway, block)
        direct_ttfb = await first_bytes(session, direct, 200)
        gateway_ttfb = await first_bytes(session, gateway, 200)
    direct_rps = await throughput(direct, 32, seconds)
    gateway_rps = await throughput(gateway, 32, seconds)
    slow_direct = direct.replace(direct.split("/")[2], slow_upstream)
    slow_direct_rps = await throughput(slow_direct, 32, seconds, "slow")
    slow_gateway_rps = await throughput(gateway, 32, seconds, "slow")
    return {
        "slow_direct_rps": slow_direct_rps,
        "slow_gateway_rps": slow_gateway_rps,
        "direct_p50_ms": statistics.median(direct_lat) * 1000,
        "gateway_p50_ms": statistics.median(gateway_lat) * 1000,
        "added_p50_ms": (statistics.median(gateway_lat) - statistics.median(direct_lat)) * 1000,
        "added_p99_ms": (percentile(gateway_lat, 0.99) - percentile(direct_lat, 0.99)) * 1000,
        "direct_ttfb_ms": statistics.median(direct_ttfb) * 1000,
        "gateway_ttfb_ms": statistics.median(gateway_ttfb) * 1000,
        "direct_rps": direct_rps,
        "gateway_rps": gateway_rps,
    }


# -------------------------------------------------------------------------------------- cold start


def cold_starts(runs: int, tmp: Path) -> list[tuple[float, float, float]]:
    """(request to answer, request to the server's /health 200, ready to answer) for RUNS cold starts of
    a fake vLLM behind the gateway (a fresh gateway each time)."""
    import httpx

    env = dict(os.environ)
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        env[var] = str(tmp / var.lower())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAKE), env.get("PYTHONPATH")]))
    presets = tmp / "xdg_config_home" / "vllm-launch" / "presets"
    presets.mkdir(parents=True, exist_ok=True)
    found = []
    for run in range(runs):
        ready_file = tmp / f"ready-{run}"
        (presets / "cold.yaml").write_text(json.dumps({
            "model": "fake/cold", "device": "cpu", "port": free_port(), "kv_cache_space_gib": 1,
            "env": {"FAKE_VLLM_READY_FILE": str(ready_file), "FAKE_VLLM_START_S": "0.5"}}))
        port = free_port()
        command = [sys.executable, "-m", "vllm_launcher", "gateway", "cold", "--port", str(port), "--idle",
                   "0", "--name", "bench-cold"]
        gateway = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        try:
            wait_http(f"http://127.0.0.1:{port}/health")
            began = time.time()
            answer = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                                json={"model": "cold", "messages": []}, timeout=120)
            answered = time.time()
            assert answer.status_code == 200, answer.text
            ready = float(ready_file.read_text())
            found.append((answered - began, ready - began, answered - ready))
        finally:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(60)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--cold-starts", type=int, default=5)
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return
    up_port, slow_port, gw_port = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        env = {**os.environ, "XDG_STATE_HOME": str(tmp / "state"), "XDG_CONFIG_HOME": str(tmp / "config")}
        upstream = subprocess.Popen([sys.executable, __file__, "--serve-upstream", str(up_port)],
                                    start_new_session=True)
        slow = subprocess.Popen([sys.executable, __file__, "--serve-upstream", str(slow_port)],
                                env={**os.environ, "BENCH_SERVICE_MS": str(SLOW_MS)}, start_new_session=True)
        gateway = subprocess.Popen(
            [sys.executable, "-m", "vllm_launcher", "gateway", "--upstream", f"bench=http://127.0.0.1:{up_port}",
             "--upstream", f"slow=http://127.0.0.1:{slow_port}", "--port", str(gw_port), "--name", "bench"],
            env=env, stdout=subprocess.DEVNULL, start_new_session=True)
        try:
            for port in (up_port, slow_port):
                wait_http(f"http://127.0.0.1:{port}/v1/models")
            wait_http(f"http://127.0.0.1:{gw_port}/health")
            figures = asyncio.run(proxy_figures(f"http://127.0.0.1:{up_port}/v1/chat/completions",
                                                f"http://127.0.0.1:{gw_port}/v1/chat/completions",
                                                f"127.0.0.1:{slow_port}", args.requests, args.seconds))
        finally:
            for process in (gateway, upstream, slow):
                process.send_signal(signal.SIGTERM)
                process.wait(30)
        cold = cold_starts(args.cold_starts, tmp / "cold") if args.cold_starts else []

    print(f"machine: {os.cpu_count()} CPUs; {args.requests} requests per side, {args.seconds:g} s per "
          "throughput run")
    f = figures
    print(f"small request p50: direct {f['direct_p50_ms']:.2f} ms, gateway {f['gateway_p50_ms']:.2f} ms")
    print(f"added latency p50 {f['added_p50_ms']:.2f} ms (target 1 ms: ratio {f['added_p50_ms'] / 1:.2f})")
    print(f"added latency p99 {f['added_p99_ms']:.2f} ms (target 5 ms: ratio {f['added_p99_ms'] / 5:.2f})")
    print(f"stream time to first byte p50: direct {f['direct_ttfb_ms']:.2f} ms, gateway "
          f"{f['gateway_ttfb_ms']:.2f} ms (added {f['gateway_ttfb_ms'] - f['direct_ttfb_ms']:.2f} ms)")
    share = f["gateway_rps"] / f["direct_rps"]
    print("throughput at 32 clients, instant upstream (client, gateway and upstream all on this CPU): "
          f"direct "
          f"{f['direct_rps']:.0f} req/s, gateway {f['gateway_rps']:.0f} req/s = {share:.0%} of direct")
    slow_share = f["slow_gateway_rps"] / f["slow_direct_rps"]
    print(f"throughput at 32 clients, upstream taking {SLOW_MS} ms per request off this CPU (as a GPU "
          f"server does): direct {f['slow_direct_rps']:.0f} req/s, gateway {f['slow_gateway_rps']:.0f} req/s "
          f"= {slow_share:.0%} of direct (target 90%: ratio {0.9 / slow_share:.2f})")
    if cold:
        total = statistics.median(c[0] for c in cold)
        own = statistics.median(c[1] for c in cold)
        after = statistics.median(c[2] for c in cold)
        print(f"cold start ({len(cold)} runs, median): request to answer {total * 1000:.0f} ms; the server "
              f"itself (spawn to /health 200, incl. pre-flight and supervisor) {own * 1000:.0f} ms; ready to "
              f"answer {after * 1000:.0f} ms (target 100 ms: ratio {after / 0.1:.2f})")


if __name__ == "__main__":
    main()
