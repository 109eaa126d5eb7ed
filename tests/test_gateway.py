"""The gateway with fake vLLM servers behind it: routing, start on demand, scheduling by the memory
estimate, idle stop and sleep, a faithful proxy, keys, and its life as a process (detach, status, down,
a killed gateway cleaned up by the next command).

Each test runs a real `vllm-launch gateway` process on 127.0.0.1 and real supervisors starting the fake
server (tests/fake_vllm). The presets name models of the built-in catalog, so the estimate (and so the
scheduling) is the real one; `--hardware` pins the machine the gateway and the pre-flight plan for.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from conftest import (
    REPO,
    cli,
    free_port,
    port_is_free,
    record_json,
    tagged_processes,
    wait_for,
)

HARDWARE = str(REPO / "tests" / "fixtures" / "hardware" / "cpu-2core-24gib.json")
# 1.5B on the CPU with a 1 GiB KV cache: 6.6 GiB of host RAM by the estimate; two fit in 14 GiB, not in 10.
SMALL = "Qwen/Qwen2.5-Coder-1.5B-Instruct"


class Gateway:
    """One `vllm-launch gateway` process and a client for it."""

    def __init__(self, env: dict[str, str], args: list[str], log_path: Path, name: str = "gateway") -> None:
        self.env, self.name, self.log_path = env, name, log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.headers: dict[str, str] = {}
        with open(log_path, "wb") as handle:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vllm_launcher", "gateway", *args, "--name", name, "--port",
                 str(self.port), *(["--hardware", HARDWARE] if "--hardware" not in args else [])],
                env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._listening, 60)
        assert self.process.poll() is None, self.log()

    def _listening(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the gateway exited {self.process.returncode}:\n{self.log()}")
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def post(self, path: str, body: Any, timeout: float = 60, **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, timeout=timeout,
                          headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs)

    def chat(self, model: str, **extra: Any) -> httpx.Response:
        messages = [{"role": "user", "content": "hi"}]
        return self.post("/v1/chat/completions", {"model": model, "messages": messages, **extra})

    def models(self) -> dict[str, dict]:
        answer = httpx.get(f"{self.url}/v1/models", headers=self.headers, timeout=10)
        assert answer.status_code == 200, answer.text
        return {entry["id"]: entry for entry in answer.json()["data"]}

    def state(self, model: str) -> str:
        return self.models()[model]["state"]

    def metric(self, name: str, **labels: str) -> float:
        """A sample of /metrics (0 when absent)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            metric, _, label_text = key.partition("{")
            found = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
            if metric == name and found == want:
                return float(value)
        return 0.0

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=90)


@pytest.fixture
def gateways(fake_env: dict[str, str], tag: str, tmp_path: Path):
    """Start gateways (SIGTERM at the end: each stops the servers it started); then nothing may be left."""
    started: list[Gateway] = []

    def start(*args: str, name: str = "gateway", env: dict[str, str] | None = None) -> Gateway:
        gateway = Gateway(env or fake_env, list(args), tmp_path / f"{name}-{len(started)}.log", name)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        assert gateway.stop() == 0, gateway.log()
    left = [r for r in json.loads(cli(["status", "--json"], fake_env).stdout) if r["managed_by"]]
    assert not left, f"servers left after the gateway stopped: {left}"


def preset(where: dict[str, str], name: str, **fields: Any) -> str:
    """A user preset NAME of a fake model on the CPU in WHERE's config directory (fields set to None are left
    out; `env` is the server's environment, as in a preset)."""
    data = {"model": f"fake/{name}", "device": "cpu", "port": free_port(), "kv_cache_space_gib": 1, **fields}
    directory = Path(where["XDG_CONFIG_HOME"]) / "vllm-launch" / "presets"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.yaml").write_text(json.dumps({k: v for k, v in data.items() if v is not None}))
    return name


def small(where: dict[str, str], name: str, **fields: Any) -> str:
    """A preset of the 1.5B model served under its own name."""
    return preset(where, name, model=SMALL, served_model_name=f"model-{name}", **fields)


def status(env: dict[str, str]) -> dict[str, dict]:
    result = cli(["status", "--json"], env)
    assert result.returncode == 0, result.stderr
    return {entry["name"]: entry for entry in json.loads(result.stdout)}


def concurrently(count: int, call: Any) -> list[httpx.Response]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: call(), range(count)))


# ------------------------------------------------------------------------------------------- routing


def test_routes_by_served_name_preset_name_and_alias(gateways, fake_env):
    preset(fake_env, "alpha", aliases=["coder", "fast"], max_model_len=4096)
    preset(fake_env, "beta")
    gateway = gateways("alpha", "beta", "--idle", "0")
    models = gateway.models()
    assert set(models) == {"fake/alpha", "alpha", "coder", "fast", "fake/beta", "beta"}
    assert {entry["state"] for entry in models.values()} == {"stopped"}
    assert models["coder"]["max_model_len"] == 4096 and models["coder"]["preset"] == "alpha"

    answer = gateway.chat("coder")
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == "fake/alpha"  # rewritten to the name the server serves
    assert gateway.state("alpha") == "running" and gateway.state("beta") == "stopped"
    for path, body in [("/v1/completions", {"prompt": "x"}), ("/v1/embeddings", {"input": "x"}),
                       ("/v1/responses", {"input": "x"}), ("/tokenize", {"prompt": "x"}),
                       ("/detokenize", {"tokens": [1]})]:
        routed = gateway.post(path, {"model": "fast", **body})
        assert routed.status_code == 200, (path, routed.text)
    assert gateway.chat("fake/alpha").status_code == 200

    unknown = gateway.chat("gpt-4")
    assert unknown.status_code == 404
    error = unknown.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "model_not_found"
    assert "'gpt-4'" in error["message"] and "coder" in error["message"] and "fake/beta" in error["message"]
    not_json = httpx.post(f"{gateway.url}/v1/chat/completions", content=b"{nope", timeout=10)
    assert not_json.status_code == 400 and "error" in not_json.json()

    seen = status(fake_env)
    assert seen["gateway"]["kind"] == "gateway" and seen["gateway"]["state"] == "ready"
    assert seen["alpha"]["managed_by"] == "gateway" and seen["alpha"]["state"] == "ready"
    assert "beta" not in seen
    table = cli(["status"], fake_env).stdout
    assert "gateway for alpha, beta" in table and "fake/alpha (via gateway)" in table
    logs = cli(["logs", "alpha"], fake_env)
    assert logs.returncode == 0 and "Application startup complete" in logs.stdout
    assert "POST /v1/chat/completions coder -> alpha 200" in gateway.log()
    assert gateway.metric("vllm_launch_gateway_requests_total", model="alpha", status="200") == 7


def test_concurrent_requests_wait_for_one_cold_start(gateways, fake_env, tag):
    preset(fake_env, "slow", env={"FAKE_VLLM_START_S": "2"})
    gateway = gateways("slow", "--idle", "0")
    answers = concurrently(8, lambda: gateway.chat("slow"))
    assert [a.status_code for a in answers] == [200] * 8
    assert gateway.log().count("cold start slow: starting its server") == 1
    assert gateway.metric("vllm_launch_gateway_cold_starts_total", model="slow") == 1
    servers = [p for p in tagged_processes(tag) if "FAKE_VLLM_ROLE" not in p.environ()]
    assert len(servers) == 1


def test_requests_past_max_waiting_get_429(gateways, fake_env):
    preset(fake_env, "queue", max_waiting=2, env={"FAKE_VLLM_START_S": "3"})
    gateway = gateways("queue", "--idle", "0")
    codes = sorted(a.status_code for a in concurrently(6, lambda: gateway.chat("queue")))
    assert codes == [200, 200, 429, 429, 429, 429]
    limited = gateway.chat("queue")  # started by now: served at once
    assert limited.status_code == 200


def test_429_is_in_openais_shape(gateways, fake_env):
    preset(fake_env, "none", max_waiting=0, env={"FAKE_VLLM_START_S": "1"})
    gateway = gateways("none", "--idle", "0")
    refused = gateway.chat("none")
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_error" and refused.headers["retry-after"] == "5"
    assert "max_waiting 0" in refused.json()["error"]["message"]


def test_a_start_failure_is_503_with_the_diagnosis_and_is_not_retried(gateways, fake_env):
    preset(fake_env, "broken", env={"FAKE_VLLM_MODE": "exit_during_start"})
    gateway = gateways("broken", "--idle", "0")
    first = gateway.chat("broken")
    assert first.status_code == 503, first.text
    message = first.json()["error"]["message"]
    assert message.startswith("broken failed to start") and 0 < int(first.headers["retry-after"]) <= 60
    assert "max_num_batched_tokens" in message and "fix:" in message  # doctor's diagnosis of the log
    again = [gateway.chat("broken") for _ in range(3)]
    assert {a.status_code for a in again} == {503}
    assert gateway.log().count("cold start broken: starting its server") == 1
    assert gateway.state("broken") == "failed"


def test_a_port_taken_between_pick_and_bind_is_retried_on_another(gateways, fake_env, tmp_path):
    marker = tmp_path / "port-taken-once"
    preset(fake_env, "racy", env={"FAKE_VLLM_PORT_TAKEN_ONCE": str(marker)})
    gateway = gateways("racy", "--idle", "0")
    answer = gateway.chat("racy")
    assert answer.status_code == 200, answer.text
    assert marker.exists()  # the first server did fail to bind
    log = gateway.log()
    assert "was taken before vLLM bound it; trying another (attempt 2 of 3)" in log
    assert log.count("cold start racy: ready in") == 1 and status(fake_env)["racy"]["state"] == "ready"


# ------------------------------------------------------------------------------------- scheduling


def test_the_least_recently_used_idle_server_makes_room(gateways, fake_env):
    for name in ("a", "b", "c"):
        small(fake_env, name)
    gateway = gateways("a", "b", "c", "--idle", "0", "--memory-gib", "14")
    for model in ("a", "b", "a"):  # b is now the least recently used
        assert gateway.chat(model).status_code == 200
    assert gateway.chat("c").status_code == 200
    assert {m: gateway.state(m) for m in "abc"} == {"a": "running", "b": "stopped", "c": "running"}
    assert "stopping b (making room)" in gateway.log()
    assert gateway.metric("vllm_launch_gateway_evictions_total", model="b") == 1
    assert set(status(fake_env)) == {"gateway", "a", "c"}


def _expected_shortfall(env: dict[str, str], name: str, capacity_gib: float, used_by: str) -> str:
    from vllm_launcher.base.units import GIB
    from vllm_launcher.gateway.backends import estimate_need
    from vllm_launcher.machine.hardware import load_hardware
    from vllm_launcher.preset.schema import Preset

    hardware = load_hardware(HARDWARE)
    need, held = (estimate_need(Preset(name=n, model=SMALL, device="cpu", kv_cache_space_gib=1),
                                hardware)[0].ram for n in (name, used_by))
    free = capacity_gib * GIB - held
    return f"needs {need / GIB:.1f} GiB of host RAM, {free / GIB:.1f} GiB free"


def test_a_pinned_server_is_never_evicted_and_the_refusal_has_the_numbers(gateways, fake_env):
    small(fake_env, "pinned", keep_loaded=True)
    small(fake_env, "other")
    gateway = gateways("pinned", "other", "--idle", "0", "--memory-gib", "10")
    assert gateway.chat("pinned").status_code == 200
    refused = gateway.chat("other")
    assert refused.status_code == 503
    expected = _expected_shortfall(fake_env, "other", 10, "pinned")
    assert refused.json()["error"]["message"] == f"cannot start other {expected}; pinned: pinned"
    assert gateway.state("pinned") == "running" and gateway.state("other") == "stopped"


def test_a_busy_server_is_not_evicted_until_its_request_ends(gateways, fake_env):
    small(fake_env, "busy", env={"FAKE_VLLM_STREAM_DELAY_S": "0.25", "FAKE_VLLM_STREAM_TOKENS": "16"})
    small(fake_env, "next")
    gateway = gateways("busy", "next", "--idle", "0", "--memory-gib", "10")
    first_chunk = threading.Event()

    def stream() -> int:
        body = {"model": "busy", "stream": True, "messages": []}
        with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=60) as answer:
            for line in answer.iter_lines():
                if line.startswith("data:"):
                    first_chunk.set()
        return answer.status_code

    with ThreadPoolExecutor(1) as pool:
        streaming = pool.submit(stream)
        assert first_chunk.wait(30)
        refused = gateway.chat("next")
        assert refused.status_code == 503
        assert refused.json()["error"]["message"].endswith("busy: busy")
        assert streaming.result() == 200
    assert gateway.chat("next").status_code == 200  # the stream ended: busy is idle and makes room
    assert gateway.state("busy") == "stopped"


def test_an_idle_server_stops_after_its_idle_timeout(gateways, fake_env):
    # 4 s of idle: long enough that a loaded machine reads the pid before it stops, short for a test.
    preset(fake_env, "brief", idle_timeout="4s")
    preset(fake_env, "steady")
    gateway = gateways("brief", "steady", "--idle", "0")
    assert gateway.chat("brief").status_code == 200
    server_pid = status(fake_env)["brief"]["pid"]
    assert gateway.chat("steady").status_code == 200
    wait_for(lambda: gateway.state("brief") == "stopped", 20)
    assert "stopping brief (idle for 4 s)" in gateway.log()
    assert not psutil.pid_exists(server_pid) or psutil.Process(server_pid).status() == psutil.STATUS_ZOMBIE
    assert set(status(fake_env)) == {"gateway", "steady"}
    assert gateway.state("steady") == "running"
    assert gateway.chat("brief").status_code == 200  # and starts again on the next request
    assert gateway.metric("vllm_launch_gateway_cold_starts_total", model="brief") == 2


def test_the_gateway_idle_default_applies_to_presets_without_their_own(gateways, fake_env):
    preset(fake_env, "plain")
    gateway = gateways("plain", "--idle", "1s")
    assert gateway.chat("plain").status_code == 200
    wait_for(lambda: gateway.state("plain") == "stopped", 15)


# ----------------------------------------------------------------------------- sleep mode (GPU)


def gpu_hardware(tmp_path: Path, total_gib: int = 80) -> str:
    data = json.loads(Path(HARDWARE).read_text())
    data.update(gpus=[{"index": 0, "name": "NVIDIA H100 80GB HBM3", "total_bytes": total_gib << 30,
                       "free_bytes": (total_gib - 1) << 30, "compute_capability": [9, 0]}],
                cuda_available=True, torch_available=True, gpu_source="torch")
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(data))
    return str(path)


def server_process(env: dict[str, str], name: str) -> psutil.Process:
    return psutil.Process(status(env)[name]["pid"])


def test_sleep_when_idle_sleeps_and_wakes_instead_of_stopping(gateways, fake_env, tmp_path):
    # 4 s of idle: a loaded machine checks it is awake again before it falls asleep once more.
    preset(fake_env, "sleepy", model=SMALL, device="cuda", sleep_when_idle=True,
                 idle_timeout="4s", kv_cache_space_gib=None)
    gateway = gateways("sleepy", "--idle", "0", "--hardware", gpu_hardware(tmp_path))
    assert gateway.chat("sleepy").status_code == 200
    server = server_process(fake_env, "sleepy")
    assert "--enable-sleep-mode" in server.cmdline()
    assert server.environ().get("VLLM_SERVER_DEV_MODE") == "1"
    wait_for(lambda: gateway.state("sleepy") == "idle", 15)
    endpoint = status(fake_env)["sleepy"]["endpoint"]
    assert httpx.get(f"{endpoint}/is_sleeping", timeout=5).json() == {"is_sleeping": True}
    assert server.is_running()  # asleep, not stopped
    answer = gateway.chat("sleepy")
    assert answer.status_code == 200, answer.text
    assert server_process(fake_env, "sleepy").pid == server.pid
    assert httpx.get(f"{endpoint}/is_sleeping", timeout=5).json() == {"is_sleeping": False}
    assert gateway.metric("vllm_launch_gateway_sleeps_total", model="sleepy") == 1
    assert gateway.metric("vllm_launch_gateway_wakes_total", model="sleepy") == 1
    assert gateway.metric("vllm_launch_gateway_cold_starts_total", model="sleepy") == 1


def test_sleeping_makes_room_on_the_gpu(gateways, fake_env, tmp_path):
    """Two presets that take 60% of the GPU each: the one that can sleep is put to sleep for the other,
    and woken again (the other, which cannot sleep, stopped) on its next request."""
    preset(fake_env, "sleeper", model=SMALL, served_model_name="model-sleeper",
                 device="cuda", sleep_when_idle=True, gpu_memory_utilization=0.6, kv_cache_space_gib=None)
    preset(fake_env, "waker", model=SMALL, served_model_name="model-waker", device="cuda",
                 gpu_memory_utilization=0.6, kv_cache_space_gib=None)
    gateway = gateways("sleeper", "waker", "--idle", "0", "--hardware", gpu_hardware(tmp_path))
    assert gateway.chat("sleeper").status_code == 200
    assert gateway.chat("waker").status_code == 200
    assert gateway.state("sleeper") == "idle" and gateway.state("waker") == "running"
    assert "putting sleeper to sleep (making room)" in gateway.log()
    assert gateway.chat("sleeper").status_code == 200
    assert gateway.state("sleeper") == "running" and gateway.state("waker") == "stopped"
    assert gateway.metric("vllm_launch_gateway_evictions_total", model="waker") == 1
    assert gateway.metric("vllm_launch_gateway_cold_starts_total", model="sleeper") == 1


# ------------------------------------------------------------------------------------- the proxy


def test_a_stream_passes_chunk_by_chunk(gateways, fake_env):
    preset(fake_env, "streamer",
                 env={"FAKE_VLLM_STREAM_DELAY_S": "0.3", "FAKE_VLLM_STREAM_TOKENS": "5"})
    gateway = gateways("streamer", "--idle", "0")
    assert gateway.chat("streamer").status_code == 200  # started: the stream below is warm
    arrivals: list[tuple[float, dict]] = []
    body = {"model": "streamer", "stream": True, "messages": []}
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=30) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        lines = []
        for line in answer.iter_lines():
            lines.append(line)
            if line.startswith("data: {"):
                arrivals.append((time.time(), json.loads(line[6:])))
    assert lines[-2:] == ["data: [DONE]", ""] or lines[-1] == "data: [DONE]"
    assert len(arrivals) == 5
    # Each chunk reaches the client while the server is still producing the next ones (0.3 s apart):
    # nothing is held back until the end.
    for arrived, _chunk in arrivals[:-1]:
        assert arrived < arrivals[-1][1]["sent_at"], "a chunk was held back until a later one was sent"


def test_status_headers_and_body_pass_unchanged(gateways, fake_env):
    preset(fake_env, "plain")
    gateway = gateways("plain", "--idle", "0")
    bad = gateway.chat("plain", max_tokens=-1)
    assert bad.status_code == 400
    assert bad.headers["x-fake-upstream"] == "kept"
    assert bad.json() == {"error": {"message": "max_tokens must be at least 1, got -1.",
                                    "type": "BadRequestError", "param": None, "code": 400}}
    good = gateway.chat("plain")
    assert good.headers["x-fake-upstream"] == "kept" and good.headers["content-type"] == "application/json"
    assert good.json()["choices"][0]["message"]["content"] == "hello from fake vllm"


def test_a_client_that_goes_away_cancels_the_upstream_request(gateways, fake_env):
    preset(fake_env, "long",
                 env={"FAKE_VLLM_STREAM_DELAY_S": "0.2", "FAKE_VLLM_STREAM_TOKENS": "300"})
    gateway = gateways("long", "--idle", "0")
    body = {"model": "long", "stream": True, "messages": []}
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=30) as answer:
        seen = 0
        for line in answer.iter_lines():
            seen += line.startswith("data:")
            if seen == 2:
                break  # the client leaves mid-stream
    log = Path(status(fake_env)["long"]["log"])
    wait_for(lambda: "stream cancelled: the client went away" in log.read_text(), 15)
    wait_for(lambda: "POST /v1/chat/completions long -> long 499" in gateway.log(), 15)
    assert gateway.metric("vllm_launch_gateway_in_flight", model="long") == 0


def test_a_client_that_hangs_up_after_done_got_its_answer(gateways, fake_env):
    """The OpenAI SDK stops reading at `data: [DONE]`; when the upstream's end of body comes later, the
    client is gone before it: that answer was whole, a 200, not a 499."""
    preset(fake_env, "late", env={"FAKE_VLLM_EOF_DELAY_S": "2", "FAKE_VLLM_STREAM_TOKENS": "2"})
    gateway = gateways("late", "--idle", "0")
    body = {"model": "late", "stream": True, "messages": []}
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=30) as answer:
        events = []
        for line in answer.iter_lines():
            events += [line] if line.startswith("data:") else []
            if line == "data: [DONE]":
                break  # and hang up, as the SDK does
    assert len(events) == 3
    wait_for(lambda: "POST /v1/chat/completions late -> late" in gateway.log(), 15)
    assert "late -> late 200" in gateway.log(), gateway.log()
    assert gateway.metric("vllm_launch_gateway_requests_total", model="late", status="200") == 1


def test_an_upstream_crash_is_a_502_in_openais_shape(gateways, fake_env):
    preset(fake_env, "dies", env={"FAKE_VLLM_MODE": "crash_mid_response"})
    gateway = gateways("dies", "--idle", "0")
    answer = gateway.chat("dies")
    assert answer.status_code == 502, answer.text
    error = answer.json()["error"]
    assert error["type"] == "upstream_error" and "dies" in error["message"]


def test_a_server_that_died_is_cleaned_up_when_the_gateway_stops_even_after_it_noticed(gateways, fake_env):
    """The gateway's tick sees the failed record first (the model shows as stopped); its shutdown must still
    remove that record, which names the gateway as its manager (the fixture checks that nothing is left)."""
    preset(fake_env, "dies", env={"FAKE_VLLM_MODE": "crash_mid_response"})
    gateway = gateways("dies", "--idle", "0")
    assert gateway.chat("dies").status_code == 502
    wait_for(lambda: status(fake_env).get("dies", {}).get("state") == "failed", 30)
    wait_for(lambda: gateway.state("dies") == "stopped", 30)
    assert gateway.stop() == 0, gateway.log()
    assert "dies" not in status(fake_env), gateway.log()


def test_a_server_started_by_hand_under_the_name_of_one_the_gateway_lost_is_left_running(gateways, fake_env):
    preset(fake_env, "dies", env={"FAKE_VLLM_MODE": "crash_mid_response"})
    gateway = gateways("dies", "--idle", "0")
    assert gateway.chat("dies").status_code == 502
    wait_for(lambda: gateway.state("dies") == "stopped", 30)
    started = cli(["up", "dies", "--detach"], fake_env)  # replaces the failed record: now the user's
    assert started.returncode == 0, started.stderr
    try:
        assert gateway.stop() == 0, gateway.log()
        assert status(fake_env)["dies"]["state"] == "ready"
    finally:
        assert cli(["down", "dies"], fake_env).returncode == 0


def test_an_upstream_crash_mid_stream_ends_the_stream_with_an_error_event(gateways, fake_env):
    preset(fake_env, "dies", env={"FAKE_VLLM_MODE": "crash_mid_stream"})
    gateway = gateways("dies", "--idle", "0")
    body = {"model": "dies", "stream": True, "messages": []}
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=30) as answer:
        events = [line[6:] for line in answer.iter_lines() if line.startswith("data: ")]
    assert answer.status_code == 200  # sent before the crash
    assert len(events) == 3
    error = json.loads(events[-1])["error"]
    assert error["type"] == "upstream_error" and error["code"] == "502"


def test_the_gateway_key_is_required_and_the_upstream_key_injected(gateways, fake_env):
    fake_env.update(GATEWAY_KEY="gateway-secret-1", SERVER_KEY="server-secret-2")
    preset(fake_env, "locked", api_key_env="SERVER_KEY")
    gateway = gateways("locked", "--idle", "0", "--api-key-env", "GATEWAY_KEY")
    missing = gateway.chat("locked")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    wrong = gateway.chat("locked", headers={"Authorization": "Bearer server-secret-2"})
    assert wrong.status_code == 401
    assert httpx.get(f"{gateway.url}/v1/models", timeout=5).status_code == 401
    assert httpx.get(f"{gateway.url}/health", timeout=5).status_code == 200
    gateway.headers = {"Authorization": "Bearer gateway-secret-1"}
    answer = gateway.chat("locked")
    assert answer.status_code == 200, answer.text  # the server accepted the key the gateway put in
    endpoint = status(fake_env)["locked"]["endpoint"]
    direct = httpx.post(f"{endpoint}/v1/chat/completions", json={"model": "fake/locked"}, timeout=5)
    assert direct.status_code == 401  # the server itself does require its key
    record = json.dumps(record_json(fake_env, "gateway")) + json.dumps(record_json(fake_env, "locked"))
    for secret in ("gateway-secret-1", "server-secret-2"):
        assert secret not in gateway.log() and secret not in record


# ------------------------------------------------------------------------------------ operations


def test_detach_status_and_down_gateway_leave_nothing(fake_env, tag):
    preset(fake_env, "alpha")
    preset(fake_env, "beta")
    port = free_port()
    started = cli(["gateway", "alpha", "beta", "--detach", "--port", str(port), "--hardware", HARDWARE,
                   "--idle", "0"], fake_env)
    assert started.returncode == 0, started.stderr
    assert "gateway is ready" in started.stdout and "gateway gateway" not in started.stdout
    assert f"base_url: http://127.0.0.1:{port}/v1" in started.stdout
    assert f"export OPENAI_BASE_URL=http://127.0.0.1:{port}/v1" in started.stdout
    assert "export OPENAI_API_KEY=EMPTY" in started.stdout  # no --api-key-env: any key works
    for model in ("alpha", "beta"):
        assert httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": model},
                          timeout=60).status_code == 200
    seen = status(fake_env)
    assert set(seen) == {"gateway", "alpha", "beta"}
    server_ports = [seen[name]["port"] for name in ("alpha", "beta")]
    logs = cli(["logs", "gateway"], fake_env)
    assert "cold start alpha: ready" in logs.stdout
    stopped = cli(["down", "gateway"], fake_env)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped the gateway (" in stopped.stdout and "gateway gateway" not in stopped.stdout
    assert status(fake_env) == {}
    assert all(port_is_free(p) for p in [port, *server_ports])
    assert not tagged_processes(tag)


def test_a_killed_gateway_is_cleaned_up_by_the_next_down(fake_env, tag):
    preset(fake_env, "alpha")
    port = free_port()
    started = cli(["gateway", "alpha", "--detach", "--port", str(port), "--hardware", HARDWARE], fake_env)
    assert started.returncode == 0, started.stderr
    assert httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "alpha"},
                      timeout=60).status_code == 200
    gateway_pid = status(fake_env)["gateway"]["pid"]
    psutil.Process(gateway_pid).kill()  # vllm-launch itself dies: its server runs on
    wait_for(lambda: status(fake_env)["gateway"]["state"] == "stale", 15)
    assert status(fake_env)["alpha"]["state"] == "ready"
    stopped = cli(["down", "gateway"], fake_env)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped alpha" in stopped.stdout
    assert status(fake_env) == {}
    assert not tagged_processes(tag)


def test_a_running_server_is_adopted_and_left_running(gateways, fake_env):
    preset(fake_env, "mine")
    assert cli(["up", "mine", "--detach"], fake_env).returncode == 0
    gateway = gateways("mine", "--idle", "1s")
    assert gateway.state("mine") == "running"
    assert gateway.chat("mine").status_code == 200
    assert gateway.metric("vllm_launch_gateway_cold_starts_total", model="mine") == 0
    time.sleep(2.5)  # past the idle timeout: not the gateway's to stop
    assert gateway.state("mine") == "running"
    assert gateway.stop() == 0
    assert status(fake_env)["mine"]["state"] == "ready"
    assert cli(["down", "mine"], fake_env).returncode == 0


def test_an_external_upstream_is_routed_and_never_started(gateways, fake_env):
    preset(fake_env, "outside")
    assert cli(["up", "outside", "--detach"], fake_env).returncode == 0
    endpoint = status(fake_env)["outside"]["endpoint"]
    try:
        gateway = gateways("--upstream", f"fake/outside={endpoint}")
        assert gateway.state("fake/outside") == "running"
        assert gateway.chat("fake/outside").status_code == 200
        assert gateway.stop() == 0
        assert status(fake_env)["outside"]["state"] == "ready"
    finally:
        assert cli(["down", "outside"], fake_env).returncode == 0


def test_render_systemd_is_a_unit_for_the_gateway_alone(fake_env, tmp_path):
    preset(fake_env, "alpha")
    result = cli(["gateway", "alpha", "--port", "9090", "--api-key-env", "GW_KEY", "--render", "systemd"],
                 fake_env)
    assert result.returncode == 0, result.stderr
    unit = result.stdout
    exec_line = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert "-m vllm_launcher gateway alpha --name gateway --host 127.0.0.1 --port 9090" in exec_line
    assert "--detach" not in exec_line and "KillMode=mixed" in unit
    assert "GW_KEY" in unit and "gateway-secret" not in unit
    written = cli(["gateway", "alpha", "--render", "systemd", "-o", str(tmp_path / "out")], fake_env)
    assert written.returncode == 0, written.stderr
    files = list((tmp_path / "out").iterdir())
    assert len(files) == 1 and files[0].suffix == ".service"
    import shutil

    analyze = shutil.which("systemd-analyze")
    if analyze:  # where systemd is installed, it agrees that the unit is valid
        check = subprocess.run([analyze, "verify", "--man=no", str(files[0])], capture_output=True, text=True,
                               check=False)
        assert "Unknown key" not in check.stderr and "Failed to parse" not in check.stderr, check.stderr


@pytest.mark.parametrize(("args", "needle"), [
    (["--upstream", "no-url"], "--upstream"),
    (["--idle", "soon"], "--idle"),
    (["--port", "0"], "--port"),
    (["--memory-gib", "-1"], "--memory-gib"),
    (["--name", "../x"], "--name"),
    (["--host", "exa mple"], "host"),
    (["missing-preset"], "missing-preset"),
    (["--api-key-env", "A-B"], "--api-key-env"),
    (["--render", "k8s"], "--render"),
])
def test_bad_gateway_input_is_one_line_and_exit_2(fake_env, args, needle):
    preset(fake_env, "alpha")
    result = cli(["gateway", "alpha", *args, "--hardware", HARDWARE], fake_env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and needle in result.stderr, result.stderr
    assert len([line for line in lines if "error" in line]) == 1


def test_two_presets_claiming_one_name_are_refused_naming_both(fake_env):
    preset(fake_env, "one", aliases=["shared"])
    preset(fake_env, "two", aliases=["shared"])
    result = cli(["gateway", "one", "two", "--hardware", HARDWARE], fake_env)
    assert result.returncode == 2
    assert "'shared' would route to both one and two" in result.stderr


def test_a_port_in_use_is_refused_before_anything_starts(fake_env):
    import socket

    preset(fake_env, "alpha")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = cli(["gateway", "alpha", "--port", str(port), "--hardware", HARDWARE], fake_env)
    assert result.returncode != 0 and f"port {port}" in result.stderr and "Traceback" not in result.stderr
    assert status(fake_env) == {}


def test_a_second_gateway_of_the_same_name_is_refused(gateways, fake_env):
    preset(fake_env, "alpha")
    gateways("alpha")
    again = cli(["gateway", "alpha", "--port", str(free_port()), "--hardware", HARDWARE], fake_env)
    assert again.returncode == 2 and "gateway" in again.stderr and "Traceback" not in again.stderr


def test_a_start_after_a_stop_waits_until_the_gpu_memory_is_released(gateways, fake_env, tmp_path):
    """nvidia-smi (a fake on PATH) still lists the stopped server's pid, as the driver may for a moment:
    the next start on that GPU waits until it no longer does."""
    held = tmp_path / "gpu-pids"
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text('#!/bin/sh\ncase "$*" in *--query-compute-apps=pid*) cat "$FAKE_SMI_PIDS" 2>/dev/null;; '
                   '*) exit 9;; esac\n')
    smi.chmod(0o755)
    fake_env.update(PATH=f"{smi.parent}:{fake_env['PATH']}", FAKE_SMI_PIDS=str(held))
    for name in ("first", "second"):
        preset(fake_env, name, model=SMALL, served_model_name=f"model-{name}", device="cuda",
               gpu_memory_utilization=0.6, kv_cache_space_gib=None)
    gateway = gateways("first", "second", "--idle", "0", "--hardware", gpu_hardware(tmp_path))
    assert gateway.chat("first").status_code == 200
    held.write_text(f"{status(fake_env)['first']['pid']}\n")
    released: list[float] = []
    release = threading.Timer(2.0, lambda: (held.write_text(""), released.append(time.time())))
    release.start()
    assert gateway.chat("second").status_code == 200
    release.join()
    # The stop of `first` (its supervisor, then the gateway) waited for nvidia-smi to let go of its pid:
    # `second` was spawned only after that.
    assert status(fake_env)["second"]["started_at"] >= released[0]
    assert "stopping first (making room)" in gateway.log()
