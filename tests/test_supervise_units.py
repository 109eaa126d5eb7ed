"""The pure parts of supervise: diagnosis of vLLM's error texts, log phases, metrics, the state records
(atomic writes, stale detection by pid + start time), ready-time history, back-off and GPU start locks."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from vllm_launcher.machine import records, system
from vllm_launcher.supervise import diagnose, history, readiness
from vllm_launcher.supervise.lifecycle import RestartPolicy, gpu_lock_plan

# vLLM 0.32's texts (VLLM-NOTES.md "Errors vLLM raises at start-up" and what was seen on this machine).
ERROR_TEXTS = [
    (("ValueError: max_num_batched_tokens (2048) is smaller than max_model_len (8192). This effectively "
     "limits the maximum sequence length to max_num_batched_tokens and makes vLLM reject longer sequences. "
     "Please increase max_num_batched_tokens or decrease max_model_len."),
     "batched-below-len", "--max-num-batched-tokens 8192"),
    ("ValueError: max_num_batched_tokens (8) must be greater than or equal to max_num_seqs (256).",
     "batched-below-seqs", "--max-num-batched-tokens 256"),
    (("ValueError: User-specified max_model_len (65536) is greater than the derived max_model_len "
     "(max_position_embeddings=32768 or model_max_length=None in model's config.json)."),
     "len-above-model", "--max-model-len 32768"),
    (("ValueError: To serve at least one request with the models's max seq len (32768), (6.0 GiB KV cache is "
     "needed, which is larger than the available KV cache memory (1.0 GiB). Based on the available memory, "
     "the estimated maximum model length is 5456. Try increasing `gpu_memory_utilization` or decreasing "
     "`max_model_len` when initializing the engine."),
     "kv-too-small", "--max-model-len 5456, or more KV memory: --kv-cache 6"),
    (("ValueError: Available memory on node 0 (8.59/11.65 GiB) on startup is less than desired CPU memory "
     "utilization (0.92, 10.72 GiB). On the CPU backend, the `--gpu-memory-utilization` flag controls ..."),
     "cpu-memory-utilization", "--kv-cache 4"),  # half of the 8.59 GiB free: weights need the rest
    (("ValueError: Free memory on device cuda:0 (10.2/79.19 GiB) on startup is less than desired GPU memory "
     "utilization (0.9, 71.27 GiB). Decrease GPU memory utilization or reduce GPU memory used by other "
     "processes."), "gpu-busy", "lower --gpu-memory-utilization"),
    ("ValueError: Total number of attention heads (28) must be divisible by tensor parallel size (3).",
     "tp-heads", "--tp 2"),
    ("TypeError: --enable-auto-tool-choice requires --tool-call-parser", "tool-parser-missing",
     "tool_calling.parser=hermes"),
    ("KeyError: 'invalid tool call parser: hermez (chose from { hermes, mistral, llama3_json })'",
     "tool-parser-unknown", "hermes, mistral, llama3_json"),
    (("OSError: [Errno 98] error while attempting to bind on address ('127.0.0.1', 8000): address already "
      "in use"),
     "port-in-use", "another --port"),
    ("api_server.py: error: unrecognized arguments: --no-such-flag 3", "unknown-flag", "extra_args"),
    ("RuntimeError: operator torchvision::nms does not exist", "torchvision-broken",
     "pip uninstall -y torchvision"),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.", "out-of-memory",
     "--max-model-len"),
    (("ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
     "initializing the engine."), "no-kv-memory", "--gpu-memory-utilization"),
]


@pytest.mark.parametrize(("text", "code", "fix_part"), ERROR_TEXTS, ids=[t[1] + str(i) for i, t in
                                                                        enumerate(ERROR_TEXTS)])
def test_diagnosis_of_known_errors(text, code, fix_part):
    lines = ["INFO 11-25 10:00:00 [api_server.py:1] vLLM API server version 0.32.0", "Traceback ...", text]
    found = diagnose.diagnose(lines)
    assert found is not None and found.code == code
    assert fix_part in found.fix
    assert found.recurring  # all of these come back on a restart


def test_unknown_error_has_no_diagnosis_but_a_last_error_line():
    lines = ["INFO starting", "Traceback (most recent call last):", "  File x", "ZeroDivisionError: boom"]
    assert diagnose.diagnose(lines) is None
    assert diagnose.last_error_line(lines) == "ZeroDivisionError: boom"


def test_phases_from_vllm_log_lines():
    log = [
        "INFO 11-25 [core.py:134] Initializing a V1 LLM engine (v0.32.0) with config: model='m'",
        "INFO 11-25 [cpu_model_runner.py:68] Starting to load model /cache/tiny...",
        "INFO 11-25 [default_loader.py:502] Loading weights took 0.02 seconds",
        "INFO 11-25 [kv_cache_utils.py:2328] CPU KV cache size: 1,048,576 tokens",
        "INFO 11-25 [cpu_model_runner.py:87] Warming up model for the compilation...",
        "INFO 11-25 [core.py:403] init engine (profile, create kv cache, warmup model) took 3.10 s",
        "INFO 11-25 [entry.py:140] Starting vLLM server on http://127.0.0.1:8000",
    ]
    phases = [readiness.detect_phase(line) for line in log]
    assert phases == ["starting engine", "loading weights", "memory profiling", "KV cache allocation",
                      "CUDA graphs / warm-up", "API server starting", "API server starting"]
    assert readiness.detect_phase("INFO some unrelated line") is None


def test_metrics_parse_sums_engines_and_accepts_the_old_kv_name():
    text = ("# HELP vllm:num_requests_running x\n"
            'vllm:num_requests_running{engine="0",model_name="m"} 2.0\n'
            'vllm:num_requests_running{engine="1",model_name="m"} 1.0\n'
            'vllm:num_requests_waiting{engine="0",model_name="m"} 0.0\n'
            'vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.5\n')
    assert readiness.parse_metrics(text) == {"running": 3.0, "waiting": 0.0, "kv_cache_usage": 0.5}


def test_log_follower_splits_lines_and_carriage_returns(tmp_path):
    path = tmp_path / "log"
    follower = readiness.LogFollower(path)
    assert follower.read_lines() == []
    path.write_bytes(b"one\ntw")
    assert follower.read_lines() == ["one"]
    with open(path, "ab") as handle:
        handle.write(b"o\rprogress 50%\rprogress 100%\n")
    assert follower.read_lines() == ["two", "progress 50%", "progress 100%"]
    assert readiness.tail_lines(path, 2) == ["progress 50%", "progress 100%"]


def _record(name: str = "r", **fields) -> records.Record:
    return records.Record(name=name, preset="p", model="m", served_model="m", host="127.0.0.1", port=8000,
                        argv=["python"], log_path="/tmp/x.log", **fields)


def test_record_round_trip_is_atomic_json():
    record = _record(env={"A": "1"}, secret_env={"VLLM_API_KEY": "MY_KEY"})
    records.write(record)
    path = records.record_path("r")
    data = json.loads(path.read_text())
    assert data["secret_env"] == {"VLLM_API_KEY": "MY_KEY"}  # the name of the variable, never its value
    assert records.read("r") == record
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temp file left
    assert [r.name for r in records.list_records()] == ["r"]
    records.delete("r")
    assert records.read("r") is None


def test_stale_when_supervisor_gone_or_pid_reused():
    import psutil

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        created = psutil.Process(proc.pid).create_time()
        alive = _record(supervisor_pid=proc.pid, supervisor_create_time=created, state=records.READY)
        assert records.effective_state(alive) == records.READY
        reused = _record(supervisor_pid=proc.pid, supervisor_create_time=created - 100, state=records.READY)
        assert records.effective_state(reused) == records.STALE  # same pid, another process
    finally:
        proc.kill()
        proc.wait()
    gone = _record(supervisor_pid=proc.pid, supervisor_create_time=created, state=records.STARTING)
    assert records.effective_state(gone) == records.STALE
    failed = _record(supervisor_pid=proc.pid, supervisor_create_time=created, state=records.FAILED)
    assert records.effective_state(failed) == records.FAILED  # a finished record is not stale


def test_name_lock_serializes_writers():
    order: list[str] = []

    def hold() -> None:
        with records.locked("n"):
            order.append("a-in")
            time.sleep(0.3)
            order.append("a-out")

    thread = threading.Thread(target=hold)
    thread.start()
    time.sleep(0.1)
    with records.locked("n"):
        order.append("b-in")
    thread.join()
    assert order == ["a-in", "a-out", "b-in"]


def test_history_gives_eta_and_stall_timeout():
    key = history.key_for("demo", "m", "cpu")
    assert history.eta_s(key) is None
    assert history.stall_timeout_s(None) == history.DEFAULT_STALL_S
    for seconds in (30.0, 26.0, 28.0):
        history.record_ready(key, seconds)
    assert history.eta_s(key) == 28.0
    assert history.stall_timeout_s(28.0) == history.MIN_STALL_S
    assert history.stall_timeout_s(100.0) == 300.0
    for _ in range(10):
        history.record_ready(key, 10.0)
    assert history.eta_s(key) == 10.0  # only the last few starts count


def test_backoff_doubles_and_is_capped():
    policy = RestartPolicy(first_delay_s=1.0, max_delay_s=30.0)
    assert [policy.delay_s(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_gpu_start_locks():
    assert gpu_lock_plan(_record(device="cpu")) == []
    assert gpu_lock_plan(_record(device="cuda")) == [("gpu-all", True)]
    assert gpu_lock_plan(_record(device="cuda", gpus=["1", "0"])) == [
        ("gpu-all", False), ("gpu-0", True), ("gpu-1", True)]


def test_servers_sharing_a_gpu_start_one_at_a_time():
    """The lock plan in action: two pinned starts on GPU 0 exclude each other, GPU 1 does not wait."""
    from contextlib import ExitStack

    def take(plan, timeout_s):
        stack = ExitStack()
        for name, exclusive in plan:
            stack.enter_context(records.file_lock(records.locks_dir() / f"{name}.lock", exclusive, timeout_s))
        return stack

    first = take(gpu_lock_plan(_record(device="cuda", gpus=["0"])), 1)
    try:
        with pytest.raises(TimeoutError):
            take(gpu_lock_plan(_record(device="cuda", gpus=["0"])), 0.3)
        with pytest.raises(TimeoutError):
            take(gpu_lock_plan(_record(device="cuda")), 0.3)  # unpinned may use GPU 0
        take(gpu_lock_plan(_record(device="cuda", gpus=["1"])), 0.3).close()
    finally:
        first.close()
    take(gpu_lock_plan(_record(device="cuda", gpus=["0"])), 0.3).close()


def test_status_does_not_import_heavy_modules(fake_env):
    code = ("import sys; from vllm_launcher.commands import servers; servers.status(as_json=True); "
            "heavy = [m for m in ('torch', 'vllm', 'transformers', 'httpx', 'rich') if m in sys.modules]; "
            "assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], env=fake_env, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    daemon = ("import sys, vllm_launcher.supervise.daemon; "
              "heavy = [m for m in ('typer', 'pydantic', 'httpx', 'rich', 'yaml') if m in sys.modules]; "
              "assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", daemon], env=fake_env, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr


def test_phases_of_a_real_vllm_032_cpu_start():
    """Lines from a real start of the tiny model on this machine, in order (eager mode: no warm-up)."""
    log = [
        "(APIServer pid=1) INFO 11-25 10:14:17 [api_utils.py:286] non-default args: {'host': '127.0.0.1'}",
        ("(APIServer pid=1) WARNING 11-25 10:14:24 [vllm.py:1703] Enforce eager set, disabling "
        "torch.compile, CUDAGraphs, and JIT kernel warmup."),
        ("(EngineCore pid=2) INFO 11-25 10:14:30 [core.py:133] Initializing a V1 LLM engine (v0.32.0) "
        "with config"),
        "(Worker pid=3) INFO 11-25 10:14:38 [cpu_model_runner.py:68] Starting to load model /tmp/tiny...",
        "Loading safetensors checkpoint shards:   0% Completed | 0/1 [00:00<?, ?it/s]",
        "(Worker pid=3) INFO 11-25 10:14:38 [default_loader.py:501] Loading weights took 0.01 seconds",
        ("(Worker pid=3) INFO 11-25 10:14:39 [cpu_worker.py:260] Explicitly set (1.0/8.21) GiB for KV cache "
        "on node 0."),
        ("(EngineCore pid=2) INFO 11-25 10:14:42 [core.py:402] init engine (profile, create kv cache, "
        "warmup model) took 2.99 s"),
        "(APIServer pid=1) INFO 11-25 10:14:43 [entry.py:140] Starting vLLM server on http://127.0.0.1:18555",
        "INFO:     Application startup complete.",
    ]
    assert [readiness.detect_phase(line) for line in log] == [
        "starting engine", None, "starting engine", "loading weights", "loading weights", "memory profiling",
        "KV cache allocation", "API server starting", "API server starting", "API server starting"]


# ------------------------------------------------------------------ ports, zombies, vLLM's file store


def test_port_check_tells_a_foreign_host_from_a_busy_port():
    import socket


    # 192.0.2.1 (TEST-NET-1) is never an address of this machine: EADDRNOTAVAIL, not an exception.
    assert system.port_check("192.0.2.1", 8000) == system.PORT_NOT_LOCAL
    assert system.port_free("192.0.2.1", 8000) is False
    assert system.host_is_local("192.0.2.1") is False
    assert system.port_check("no-such-host.invalid", 8000) == system.PORT_NOT_LOCAL
    assert system.host_is_local("127.0.0.1") and system.host_is_local("0.0.0.0")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        assert system.port_check("127.0.0.1", busy) == system.PORT_IN_USE
        assert system.port_free("127.0.0.1", busy) is False
    assert system.port_check("127.0.0.1", busy) == system.PORT_FREE


def test_a_zombie_child_counts_as_gone_everywhere():
    """A child that exited but was not reaped: killpg(pgid, 0) still succeeds, so liveness must read
    the process state (or reap) or a wait loop would spin until its deadline."""
    from vllm_launcher.supervise import procs

    child = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    try:
        import psutil

        created = psutil.Process(child.pid).create_time()
        deadline = time.monotonic() + 10
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert procs.group_alive(child.pid) is False
        assert procs.alive({child.pid: created}) == []
        assert records.process_matches(child.pid, created) is False
        result = procs.stop_tree(child.pid, {child.pid: created}, timeout_s=30)
        assert result.signals == [] and result.survivors == []
    finally:
        child.kill()
        child.wait()


def test_cleanup_does_not_wait_for_a_zombie_supervisor(tmp_path):
    """`up --detach` interrupted: this process is the supervisor's parent; once SIGTERM makes it a zombie
    the wait must end (no SIGKILL fallback after the whole timeout)."""
    import psutil

    from vllm_launcher.supervise import stop

    daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        record = records.Record(name="zs", preset="p", model="m", served_model="m", host="127.0.0.1",
                              port=8000, argv=["python"], log_path=str(tmp_path / "zs.log"),
                              supervisor_pid=daemon.pid,
                              supervisor_create_time=psutil.Process(daemon.pid).create_time())
        records.write(record)
        result = stop.cleanup(record, timeout_s=30)
        assert result.signals == ["SIGTERM to its supervisor"]
        assert daemon.poll() is not None  # reaped by cleanup: no zombie left behind
    finally:
        daemon.kill()
        daemon.wait()


def test_dist_store_paths_come_from_the_log_and_nothing_else(tmp_path):
    from pathlib import Path

    from vllm_launcher.supervise import procs

    real = Path(__file__).parent / "fixtures" / "vllm_logs" / "ready_mha.log"
    assert procs.dist_store_paths(real.read_text().splitlines()) == [
        "/tmp/vllm_dist_b071c0a9d34f4c6b806287829ba490c3"]
    hostile = ["distributed_init_method=file:///etc/passwd backend=gloo",
               "distributed_init_method=file:///tmp/vllm_dist_../../etc/x backend=gloo",
               "distributed_init_method=tcp://127.0.0.1:1234 backend=gloo"]
    assert procs.dist_store_paths(hostile) == []


def test_remove_dist_stores_removes_only_regular_files_named(tmp_path):
    from vllm_launcher.supervise import procs

    ours = tmp_path / "vllm_dist_0123456789abcdef0123456789abcdef"
    ours.write_bytes(b"\0" * 2048)
    other = tmp_path / "vllm_dist_fedcba9876543210fedcba9876543210"
    other.write_bytes(b"\0" * 2048)
    link = tmp_path / "vllm_dist_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    link.symlink_to(other)
    log = tmp_path / "server.log"
    log.write_text(f"x distributed_init_method=file://{ours} backend=gloo\n"
                   f"y distributed_init_method=file://{link} backend=gloo\n")
    assert procs.remove_dist_stores(log) == [str(ours)]
    assert not ours.exists() and other.exists() and link.is_symlink()
    assert procs.remove_dist_stores(log) == []  # nothing left to remove; no error
    assert procs.remove_dist_stores(tmp_path / "missing.log") == []
