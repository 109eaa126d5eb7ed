"""Supervisor figures with the fake vLLM (tests/fake_vllm): readiness latency, crash → restart time,
supervisor RSS and idle CPU. Prints figures and their ratio to the issue's targets (ratio <= 1 is good).

    python bench/bench_supervise.py [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
FAKE = REPO / "tests" / "fake_vllm"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def readiness_latency(runs: int, tmp: Path) -> list[float]:
    """Seconds from the fake's first /health 200 to the supervisor noticing ready (in-process)."""
    from vllm_launcher.machine import records
    from vllm_launcher.supervise.supervisor import Supervisor

    latencies = []
    for run in range(runs):
        port = free_port()
        ready_file = tmp / f"ready-{run}"
        os.environ["FAKE_VLLM_READY_FILE"] = str(ready_file)
        record = records.Record(name=f"bench{run}", preset="bench", model="m", served_model="m",
                                host="127.0.0.1", port=port, log_path=str(tmp / f"bench{run}.log"),
                                device="cpu",
                                argv=[sys.executable, "-m", "vllm.entrypoints.openai.api_server",
                                      "--model", "m", "--port", str(port)])
        supervisor = Supervisor(record)
        outcome = supervisor.start_once(timeout_s=30)
        noticed = time.time()
        assert outcome.kind == "ready", outcome
        latencies.append(noticed - float(ready_file.read_text()))
        supervisor._stop_server(timeout_s=5)
    os.environ.pop("FAKE_VLLM_READY_FILE", None)
    return latencies


def write_preset(env: dict[str, str], name: str, port: int) -> None:
    directory = Path(env["XDG_CONFIG_HOME"]) / "vllm-launch" / "presets"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.yaml").write_text(json.dumps({"model": "fake/m", "device": "cpu", "port": port}))


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vllm_launcher", *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def detached_figures(tmp: Path, idle_s: float) -> dict[str, float]:
    env = dict(os.environ)
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        env[var] = str(tmp / var.lower())
    env["PYTHONPATH"] = str(FAKE)
    port = free_port()
    write_preset(env, "bench", port)
    assert cli(["up", "bench", "--detach"], env).returncode == 0
    record_path = Path(env["XDG_STATE_HOME"]) / "vllm-launch" / "servers" / "bench.json"
    record = json.loads(record_path.read_text())
    supervisor = psutil.Process(record["supervisor_pid"])
    time.sleep(1.0)
    cpu_before = sum(supervisor.cpu_times()[:2])
    time.sleep(idle_s)
    idle_cpu = (sum(supervisor.cpu_times()[:2]) - cpu_before) / idle_s
    rss = supervisor.memory_info().rss
    # Crash: SIGKILL the API server; the restart is the next server pid in the record.
    crashed_at = time.time()
    psutil.Process(record["server_pid"]).kill()
    deadline = time.monotonic() + 20
    restart_s = float("nan")
    while time.monotonic() < deadline:
        current = json.loads(record_path.read_text())
        if current.get("server_pid") != record["server_pid"] and current.get("started_at", 0) > crashed_at:
            restart_s = current["started_at"] - crashed_at
            break
        time.sleep(0.01)
    cli(["down", "bench"], env)
    return {"supervisor_rss_mb": rss / 1024**2, "idle_cpu_percent": idle_cpu * 100, "restart_s": restart_s}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--idle-s", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
            os.environ[var] = str(tmp / "inproc" / var.lower())
        os.environ["PYTHONPATH"] = str(FAKE)
        latencies = readiness_latency(args.runs, tmp)
        figures = detached_figures(tmp / "detached", args.idle_s)
    median_ms = statistics.median(latencies) * 1000
    worst_ms = max(latencies) * 1000
    rows = [
        ("readiness noticed after /health 200, median", f"{median_ms:.1f} ms", median_ms / 100),
        ("readiness noticed after /health 200, worst", f"{worst_ms:.1f} ms", worst_ms / 100),
        ("crash to restart (new server spawned)", f"{figures['restart_s']:.2f} s",
         figures["restart_s"] / 1.5),
        ("supervisor RSS", f"{figures['supervisor_rss_mb']:.1f} MB", figures["supervisor_rss_mb"] / 60),
        ("supervisor CPU while idle", f"{figures['idle_cpu_percent']:.2f} %",
         figures["idle_cpu_percent"] / 1),
    ]
    print(f"{'figure':48} {'value':>12} {'ratio to target':>16}")
    for label, value, ratio in rows:
        print(f"{label:48} {value:>12} {ratio:>16.2f}")


if __name__ == "__main__":
    main()
