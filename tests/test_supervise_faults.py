"""Faults, with the fake vLLM (tests/fake_vllm on PYTHONPATH) and the real CLI in subprocesses.

Every test tags its fake processes (FAKE_VLLM_TAG) and checks that none survive, then kills any that do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest
from conftest import (
    cli,
    port_is_free,
    record_json,
    shm_of_tag,
    status_of,
    tagged_processes,
    wait_for,
    write_preset,
)


def assert_nothing_left(tag: str, port: int, shm_pids: list[int] | None = None) -> None:
    wait_for(lambda: not tagged_processes(tag), timeout_s=5)
    assert port_is_free(port)
    if shm_pids:
        assert shm_of_tag(shm_pids) == []


def start_detached_in_background(env: dict[str, str], args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vllm_launcher", "up", *args, "--detach"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_detached_lifecycle_status_logs_down(fake_env, tag, port):
    write_preset(fake_env, "fk", port, served_model_name="fake-served")
    up = cli(["up", "fk", "--detach"], fake_env)
    assert up.returncode == 0, up.stderr
    assert f"http://127.0.0.1:{port}/v1" in up.stdout
    assert "served model:  fake-served" in up.stdout
    assert "timeout: 300" in up.stdout  # CPU: the guide's longer client timeout
    entry = status_of(fake_env, "fk")
    assert entry["state"] == "ready" and entry["port"] == port and entry["model"] == "fake-served"
    assert entry["endpoint"] == f"http://127.0.0.1:{port}"
    assert psutil.Process(entry["pid"]).is_running()
    assert entry["running"] == 1.0 and entry["waiting"] == 2.0 and entry["kv_cache_usage"] == 0.25
    assert entry["memory_bytes"] > 0
    table = cli(["status"], fake_env)
    assert "fk" in table.stdout and "ready" in table.stdout
    logs = cli(["logs", "fk", "-n", "200"], fake_env)
    assert "Application startup complete" in logs.stdout
    record = record_json(fake_env, "fk")
    assert record["argv"][1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert record["supervisor_pid"] != entry["pid"] and record["pgid"] == entry["pid"]
    engine_pids = [int(pid) for pid, _created in record["tree"]]
    down = cli(["down", "fk"], fake_env)
    assert down.returncode == 0, down.stderr
    assert f"port {port} is free" in down.stdout
    assert_nothing_left(tag, port, engine_pids)
    assert record_json(fake_env, "fk") is None
    assert json.loads(cli(["status", "--json"], fake_env).stdout) == []


def test_slow_start_shows_phases_and_becomes_ready(fake_env, tag, port):
    write_preset(fake_env, "slow", port)
    fake_env.update(FAKE_VLLM_MODE="slow_start", FAKE_VLLM_START_S="3")
    up = cli(["up", "slow", "--detach"], fake_env)
    assert up.returncode == 0, up.stderr
    phases = [line.split(": ", 2)[2] for line in up.stderr.splitlines()
              if line.startswith("vllm-launch: slow:")]
    assert [p.rsplit(" (", 1)[0] for p in phases] == [
        "starting engine", "loading weights", "memory profiling", "KV cache allocation",
        "CUDA graphs / warm-up", "API server starting"]
    assert cli(["down", "slow"], fake_env).returncode == 0
    assert_nothing_left(tag, port)


def test_exit_during_start_is_diagnosed_and_not_restarted(fake_env, tag, port):
    write_preset(fake_env, "bad", port)
    fake_env["FAKE_VLLM_MODE"] = "exit_during_start"
    up = cli(["up", "bad"], fake_env)  # foreground
    assert up.returncode == 1
    assert "max_num_batched_tokens (2048) is smaller than max_model_len (4096)" in up.stderr  # the log tail
    assert "cause: max_num_batched_tokens (2048) is smaller than max_model_len (4096)" in up.stderr
    assert "fix:   --max-num-batched-tokens 4096" in up.stderr
    record = record_json(fake_env, "bad")
    assert record["state"] == "failed" and record["restarts"] == 0
    assert record["diagnosis"]["code"] == "batched-below-len"
    log = cli(["logs", "bad", "-n", "1000"], fake_env).stdout
    assert log.count("Initializing a V1 LLM engine") == 1  # started once: a config error is not retried
    assert status_of(fake_env, "bad")["state"] == "failed"
    assert cli(["down", "bad"], fake_env).returncode == 0
    assert_nothing_left(tag, port)


def test_exit_during_start_detached(fake_env, tag, port):
    write_preset(fake_env, "bad2", port)
    fake_env.update(FAKE_VLLM_MODE="exit_during_start",
                    FAKE_VLLM_ERROR="ValueError: Total number of attention heads (28) must be divisible by "
                                    "tensor parallel size (8).")
    up = cli(["up", "bad2", "--detach"], fake_env)
    assert up.returncode == 1
    assert "cause: 28 attention heads cannot be split over tensor parallel size 8" in up.stderr
    assert "fix:   --tp 7" in up.stderr
    assert cli(["down", "bad2"], fake_env).returncode == 0
    assert_nothing_left(tag, port)


def test_crash_after_ready_is_restarted_with_growing_backoff_then_gives_up(fake_env, tag, port, monkeypatch):
    from vllm_launcher.machine import records
    from vllm_launcher.supervise.lifecycle import RestartPolicy
    from vllm_launcher.supervise.supervisor import Supervisor

    for key, value in fake_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FAKE_VLLM_MODE", "crash_after_ready")
    monkeypatch.setenv("FAKE_VLLM_CRASH_AFTER_S", "0.3")
    record = records.Record(
        name="crashy", preset="crashy", model="m", served_model="m", host="127.0.0.1", port=port,
        argv=[sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", "m",
              "--port", str(port)],
        log_path=str(records.log_path_for("crashy")), device="cpu")
    policy = RestartPolicy(first_delay_s=0.2, max_delay_s=0.8, max_restarts=4, window_s=60)
    events: list[str] = []

    from vllm_launcher.supervise.lifecycle import Reporter

    class Recorder(Reporter):
        def event(self, text: str) -> None:
            events.append(text)

    supervisor = Supervisor(record, Recorder(), policy)
    assert supervisor.run() == 1
    final = records.read("crashy")
    assert final.state == "failed" and final.restarts == 4
    assert "gave up after 4 restarts" in final.reason
    delays = [float(e.split("restarting in ")[1].split(" s")[0]) for e in events if "restarting in" in e]
    assert delays == [0.2, 0.4, 0.8, 0.8]  # doubling, capped
    assert_nothing_left(tag, port)


def test_crash_after_ready_detached_restarts(fake_env, tag, port):
    write_preset(fake_env, "crash", port)
    fake_env.update(FAKE_VLLM_MODE="crash_after_ready", FAKE_VLLM_CRASH_AFTER_S="3")
    up = cli(["up", "crash", "--detach"], fake_env)
    assert up.returncode == 0, up.stderr
    first_pid = status_of(fake_env, "crash")["pid"]
    wait_for(lambda: (record_json(fake_env, "crash") or {}).get("restarts", 0) >= 1, timeout_s=20)
    wait_for(lambda: status_of(fake_env, "crash")["state"] in ("ready", "backoff"), timeout_s=10)
    record = record_json(fake_env, "crash")
    assert record["server_pid"] != first_pid
    assert cli(["down", "crash"], fake_env).returncode == 0
    assert_nothing_left(tag, port)


def test_never_ready_times_out_and_is_killed(fake_env, tag, port):
    write_preset(fake_env, "stuck", port)
    fake_env["FAKE_VLLM_MODE"] = "never_ready,ignore_sigterm"
    up = cli(["up", "stuck", "--timeout", "2"], fake_env)
    assert up.returncode == 1
    assert "not ready after --timeout 2 s" in up.stderr
    assert_nothing_left(tag, port)


@pytest.mark.parametrize(("mode", "needed"), [
    ("never_ready,ignore_sigterm", ["SIGINT"]),  # vLLM while starting: SIGTERM ignored, SIGINT works
    ("never_ready,ignore_signals", ["SIGINT", "SIGTERM", "SIGKILL"]),
])
def test_down_while_starting_stops_a_server_that_ignores_signals(fake_env, tag, port, mode, needed):
    from vllm_launcher.supervise import procs

    write_preset(fake_env, "deaf", port)
    fake_env["FAKE_VLLM_MODE"] = mode
    up = start_detached_in_background(fake_env, ["deaf"])
    try:
        record = wait_for(lambda: (r := record_json(fake_env, "deaf")) and r.get("server_pid") and r, 20)
        wait_for(lambda: len(tagged_processes(tag)) >= 2, timeout_s=10)  # server + engine
        assert status_of(fake_env, "deaf")["state"] == "starting"
        # The tree directly, as the supervisor stops it (down goes through the supervisor).
        members = {int(p): c for p, c in record["tree"]}
        members.update({p.pid: p.create_time() for p in tagged_processes(tag)})
        result = procs.stop_tree(record["pgid"], members, timeout_s=1.0)
        assert result.signals == needed and result.survivors == []
        down = cli(["down", "deaf"], fake_env)
        assert down.returncode == 0, down.stderr
        assert up.wait(timeout=30) == 1  # `up --detach` reports that the start failed
    finally:
        up.kill()
    assert_nothing_left(tag, port)


def test_down_during_start_via_supervisor(fake_env, tag, port):
    write_preset(fake_env, "starting", port)
    fake_env["FAKE_VLLM_MODE"] = "never_ready,ignore_sigterm"
    up = start_detached_in_background(fake_env, ["starting"])
    try:
        wait_for(lambda: (r := record_json(fake_env, "starting")) and r.get("server_pid"), 20)
        down = cli(["down", "starting", "--timeout", "5"], fake_env)
        assert down.returncode == 0, down.stderr
        up.wait(timeout=30)
    finally:
        up.kill()
    assert_nothing_left(tag, port)


def test_orphan_children_are_killed_with_the_tree_and_shm_removed(fake_env, tag, port):
    write_preset(fake_env, "orphans", port)
    fake_env["FAKE_VLLM_MODE"] = "orphan_children"
    assert cli(["up", "orphans", "--detach"], fake_env).returncode == 0
    procs_before = wait_for(lambda: (found := tagged_processes(tag)) and len(found) >= 3 and found, 10)
    sessions = {os.getsid(p.pid) for p in procs_before}
    assert len(sessions) >= 2  # one child left the server's session: the group alone would miss it
    pids = [p.pid for p in procs_before]
    wait_for(lambda: len(shm_of_tag(pids)) >= 2, timeout_s=5)
    down = cli(["down", "orphans", "--timeout", "2"], fake_env)
    assert down.returncode == 0, down.stderr
    assert "SIGKILL" in down.stdout or "supervisor" in down.stdout
    assert_nothing_left(tag, port, pids)


def test_flapping_health_is_tolerated_and_persistent_503_restarts(fake_env, tag, port):
    write_preset(fake_env, "flap", port)
    fake_env.update(FAKE_VLLM_MODE="flapping_health", FAKE_VLLM_FLAP_OK_S="3", FAKE_VLLM_FLAP_BAD_S="2.5")
    assert cli(["up", "flap", "--detach"], fake_env).returncode == 0
    seen = set()
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline and not {"unhealthy", "ready"} <= seen:
        seen.add(status_of(fake_env, "flap")["state"])
        time.sleep(0.3)
    assert "unhealthy" in seen and "ready" in seen  # noticed, then recovered
    assert record_json(fake_env, "flap")["restarts"] == 0  # fewer than 3 failures in a row: no restart
    assert cli(["down", "flap"], fake_env).returncode == 0
    assert_nothing_left(tag, port)


def test_persistent_503_is_restarted(fake_env, tag, port):
    write_preset(fake_env, "sick", port)
    fake_env["FAKE_VLLM_MODE"] = "unhealthy"
    # Ready needs /health 200, so this server never becomes ready: the start times out instead.
    up = cli(["up", "sick", "--timeout", "1.5"], fake_env)
    assert up.returncode == 1 and "not ready after" in up.stderr
    assert_nothing_left(tag, port)


def test_supervisor_sigkilled_then_status_stale_and_down_cleans_up(fake_env, tag, port):
    write_preset(fake_env, "victim", port)
    assert cli(["up", "victim", "--detach"], fake_env).returncode == 0
    record = record_json(fake_env, "victim")
    os.kill(record["supervisor_pid"], signal.SIGKILL)
    wait_for(lambda: not psutil.pid_exists(record["supervisor_pid"])
             or psutil.Process(record["supervisor_pid"]).status() == psutil.STATUS_ZOMBIE, 5)
    entry = status_of(fake_env, "victim")
    assert entry["state"] == "stale"
    assert entry["pid"] == record["server_pid"]  # the server outlived its supervisor
    assert "down victim" in cli(["status"], fake_env).stdout
    pids = [p.pid for p in tagged_processes(tag)]
    down = cli(["down", "victim"], fake_env)
    assert down.returncode == 0, down.stderr
    assert_nothing_left(tag, port, pids)


def test_port_in_use_is_refused_with_its_owner_and_forced_start_is_diagnosed(fake_env, tag, port):
    import socket

    write_preset(fake_env, "busy", port)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        up = cli(["up", "busy"], fake_env)
        assert up.returncode == 1
        assert f"port {port} on 127.0.0.1 is already in use by pid {os.getpid()}" in up.stderr
        assert "--force" in up.stderr
        forced = cli(["up", "busy", "--force"], fake_env)
        assert forced.returncode == 1
        assert "cause: the port is already taken" in forced.stderr
    assert cli(["down", "busy"], fake_env).returncode == 0
    assert_nothing_left(tag, port)


def test_missing_vllm_is_refused(fake_env, tag, port, tmp_path):
    write_preset(fake_env, "novllm", port, python=sys.executable)
    fake_env["PYTHONPATH"] = str(tmp_path)  # neither the fake nor...
    fake_env["PYTHONNOUSERSITE"] = "1"
    up = cli(["up", "novllm", "--dry-run", "--set", "python=/usr/bin/python3"], fake_env)
    assert up.returncode == 1
    assert "vLLM is not installed for /usr/bin/python3" in up.stdout


def test_dry_run_prints_the_plan_and_spawns_nothing(fake_env, tag, port):
    write_preset(fake_env, "dry", port)
    result = cli(["up", "dry", "--dry-run"], fake_env)
    assert result.returncode == 0, result.stderr
    assert "-m vllm.entrypoints.openai.api_server" in result.stdout
    assert "# pre-flight: ok" in result.stdout
    assert tagged_processes(tag) == [] and record_json(fake_env, "dry") is None


def test_secret_reaches_the_server_but_never_the_record_or_log(fake_env, tag, port):
    write_preset(fake_env, "secret", port, api_key_env="MY_SERVER_KEY")
    missing = cli(["up", "secret", "--detach"], fake_env)
    assert missing.returncode == 1 and "$MY_SERVER_KEY, which is not set" in missing.stderr
    fake_env["MY_SERVER_KEY"] = "s3cr3t-value-123"
    up = cli(["up", "secret", "--detach"], fake_env)
    assert up.returncode == 0, up.stderr  # readiness passed the key to /v1/models
    # The hand-off to clients names the variable, never its value.
    assert f"export OPENAI_BASE_URL=http://127.0.0.1:{port}/v1" in up.stdout
    assert 'export OPENAI_API_KEY="$MY_SERVER_KEY"' in up.stdout and "s3cr3t" not in up.stdout + up.stderr
    state_dir = os.path.join(fake_env["XDG_STATE_HOME"], "vllm-launch")
    for root, _dirs, files in os.walk(state_dir):
        for name in files:
            with open(os.path.join(root, name), errors="replace") as handle:
                assert "s3cr3t-value-123" not in handle.read(), name
    assert "secret VLLM_API_KEY is set" in cli(["logs", "secret"], fake_env).stdout
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models",
                                     headers={"Authorization": "Bearer s3cr3t-value-123"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    assert cli(["down", "secret"], fake_env).returncode == 0
    assert_nothing_left(tag, port)


def test_two_servers_side_by_side_and_down_all(fake_env, tag, port):
    from conftest import free_port

    other_port = free_port()
    write_preset(fake_env, "twin", port)
    assert cli(["up", "twin", "--detach", "--name", "twin-a"], fake_env).returncode == 0
    assert cli(["up", "twin", "--detach", "--name", "twin-b", "--port", str(other_port)],
               fake_env).returncode == 0
    again = cli(["up", "twin", "--detach", "--name", "twin-a"], fake_env)
    assert again.returncode == 2 and "already ready" in again.stderr  # a usage error naming the holder
    assert "server twin-a (ready on port" in again.stderr
    entries = json.loads(cli(["status", "--json"], fake_env).stdout)
    assert {(e["name"], e["port"], e["state"]) for e in entries} == {
        ("twin-a", port, "ready"), ("twin-b", other_port, "ready")}
    down = cli(["down", "--all"], fake_env)
    assert down.returncode == 0, down.stderr
    assert_nothing_left(tag, port)
    assert port_is_free(other_port)


def test_foreground_sigint_stops_the_tree(fake_env, tag, port):
    write_preset(fake_env, "fg", port)
    up = subprocess.Popen([sys.executable, "-m", "vllm_launcher", "up", "fg"], env=fake_env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (record_json(fake_env, "fg") or {}).get("state") == "ready", 20)
        up.send_signal(signal.SIGINT)
        out, err = up.communicate(timeout=30)
    finally:
        up.kill()
    assert up.returncode == 0, err
    # The one visible change of the CLI rework: vLLM's INFO lines stay in the log file unless --verbose;
    # its warnings are shown.
    assert "fg is ready" in out and "Application startup complete" not in out
    assert "WARNING" in out and "fake warning" in out
    assert record_json(fake_env, "fg") is None
    assert_nothing_left(tag, port)
    verbose = subprocess.Popen([sys.executable, "-m", "vllm_launcher", "up", "fg", "--verbose"], env=fake_env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (record_json(fake_env, "fg") or {}).get("state") == "ready", 20)
        verbose.send_signal(signal.SIGINT)
        out, err = verbose.communicate(timeout=30)
    finally:
        verbose.kill()
    assert "Application startup complete" in out  # --verbose: the whole log is echoed
    assert_nothing_left(tag, port)


def test_second_ctrl_c_kills_a_server_that_ignores_the_first(fake_env, tag, port):
    """vLLM can take tens of seconds to honour SIGINT while it loads; a second Ctrl-C must not wait."""
    write_preset(fake_env, "deafg", port)
    fake_env["FAKE_VLLM_MODE"] = "never_ready,ignore_signals"
    up = subprocess.Popen([sys.executable, "-m", "vllm_launcher", "up", "deafg"], env=fake_env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (record_json(fake_env, "deafg") or {}).get("server_pid"), 20)
        wait_for(lambda: len(tagged_processes(tag)) >= 2, timeout_s=10)
        up.send_signal(signal.SIGINT)
        time.sleep(1.0)
        assert up.poll() is None and tagged_processes(tag)  # the grace before SIGKILL (2.5 s) still runs
        second = time.monotonic()
        up.send_signal(signal.SIGINT)
        out, err = up.communicate(timeout=15)
        assert time.monotonic() - second < 8  # killed at once, not after the polite waits
    finally:
        up.kill()
    assert "again to kill it now" in out + err
    assert_nothing_left(tag, port)


def test_bad_input_is_one_line(fake_env, port):
    write_preset(fake_env, "bi", port)
    for args in (["up", "bi", "--restart", "sometimes"], ["up", "bi", "--gpus", "a,b"], ["down"]):
        result = cli(args, fake_env)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    missing = cli(["down", "nothing-here"], fake_env)
    assert missing.returncode == 2 and "no server named nothing-here" in missing.stderr


# --------------------------------------------------------------------- review fixes: usage errors, leftovers


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_host_not_of_this_machine_is_a_config_error(fake_env, tag, port):
    write_preset(fake_env, "far", port)
    up = cli(["up", "far", "--detach", "--host", "192.0.2.1"], fake_env)
    assert up.returncode == 2
    assert "host 192.0.2.1 is not an address of this machine" in one_line(up)
    assert not tagged_processes(tag) and record_json(fake_env, "far") is None
    dry = cli(["up", "far", "--dry-run", "--host", "192.0.2.1"], fake_env)
    assert dry.returncode == 1 and "#   - host 192.0.2.1 is not an address of this machine" in dry.stdout


def test_hardware_file_is_the_pre_flight_of_a_real_start_too(fake_env, tag, port, tmp_path):
    """`up --hardware FILE` without --dry-run checks the fit against FILE (here: a machine whose NUMA node 0
    is far too small for the preset's KV space) and so refuses; nothing is spawned."""
    from conftest import REPO

    probe = json.loads((REPO / "tests" / "fixtures" / "hardware" / "cpu-2core-24gib.json").read_text())
    probe["ram_total_bytes"] = probe["ram_available_bytes"] = 24 * 1024**3
    probe["numa_nodes"] = [{"id": 0, "total_bytes": 512 * 1024**2, "free_bytes": 256 * 1024**2}]
    small = tmp_path / "small.json"
    small.write_text(json.dumps(probe))
    write_preset(fake_env, "hw", port)
    assert cli(["up", "hw", "--dry-run"], fake_env).returncode == 0  # fits here
    refused = cli(["up", "hw", "--detach", "--hardware", str(small)], fake_env)
    assert refused.returncode == 1
    assert "not starting hw: VL2" in one_line(refused)
    assert not tagged_processes(tag) and record_json(fake_env, "hw") is None


def test_bad_lines_and_gpus_are_usage_errors(fake_env, tag, port):
    write_preset(fake_env, "lg", port)
    try:
        assert cli(["up", "lg", "--detach"], fake_env).returncode == 0
        negative = cli(["logs", "lg", "-n", "-1"], fake_env)
        assert negative.returncode == 2 and "-n" in one_line(negative)
        assert cli(["logs", "lg", "-n", "0"], fake_env).returncode == 0
    finally:
        assert cli(["down", "lg"], fake_env).returncode == 0
    for gpus, why in (("0,0", "more than once"), ("0,x", "0,1"), ("0,,1", "0,1"), ("-1", "0,1")):
        result = cli(["up", "lg", "--gpus", gpus, "--dry-run"], fake_env)
        assert result.returncode == 2, (gpus, result.stderr)
        assert why in one_line(result), gpus
    assert_nothing_left(tag, port)


def test_unknown_server_name_is_a_usage_error_naming_the_known_ones(fake_env, tag, port):
    for command in (["status", "nope"], ["logs", "nope"], ["down", "nope"]):
        result = cli(command, fake_env)
        assert result.returncode == 2, command
        assert "no server named nope" in one_line(result) and "no servers" in one_line(result)
    write_preset(fake_env, "alpha-one", port)
    try:
        assert cli(["up", "alpha-one", "--detach"], fake_env).returncode == 0
        for command in (["status", "alpha-on"], ["logs", "alpha-on"], ["down", "alpha-on"]):
            result = cli(command, fake_env)
            assert result.returncode == 2, command
            line = one_line(result)
            assert "no server named alpha-on" in line and "did you mean alpha-one?" in line, line
            assert "known: alpha-one" in line
    finally:
        assert cli(["down", "alpha-one"], fake_env).returncode == 0
    assert_nothing_left(tag, port)


def dist_stores_in_log(env: dict[str, str], name: str) -> list[str]:
    from vllm_launcher.supervise import procs

    log = cli(["logs", name, "-n", "100000"], env).stdout
    return procs.dist_store_paths(log.splitlines())


def test_down_removes_the_vllm_dist_file_store_named_in_its_log_only(fake_env, tag, port, tmp_path):
    import tempfile
    import uuid

    decoy = f"{tempfile.gettempdir()}/vllm_dist_{uuid.uuid4().hex}"  # another server's: must stay
    with open(decoy, "wb") as handle:
        handle.write(b"\0" * 2048)
    try:
        fake_env["FAKE_VLLM_DIST_STORE"] = "1"
        write_preset(fake_env, "ds", port)
        assert cli(["up", "ds", "--detach"], fake_env).returncode == 0
        stores = dist_stores_in_log(fake_env, "ds")
        assert len(stores) == 1 and os.path.exists(stores[0])
        assert cli(["down", "ds"], fake_env).returncode == 0  # through the supervisor's stop
        assert not os.path.exists(stores[0])
        # The supervisor SIGKILLed: `down` cleans up by itself.
        assert cli(["up", "ds", "--detach"], fake_env).returncode == 0
        second = [s for s in dist_stores_in_log(fake_env, "ds") if s not in stores]
        assert len(second) == 1 and os.path.exists(second[0])
        os.kill(record_json(fake_env, "ds")["supervisor_pid"], signal.SIGKILL)
        assert cli(["down", "ds"], fake_env).returncode == 0
        assert not os.path.exists(second[0])
        assert os.path.exists(decoy)
    finally:
        cli(["down", "ds"], fake_env)  # no-op when done; stops the supervisor when the test failed midway
        if os.path.exists(decoy):
            os.unlink(decoy)
    assert_nothing_left(tag, port)


def test_restart_removes_the_crashed_start_file_store(fake_env, tag, port):
    fake_env.update(FAKE_VLLM_DIST_STORE="1", FAKE_VLLM_MODE="crash_after_ready", FAKE_VLLM_CRASH_AFTER_S="1")
    write_preset(fake_env, "rs", port)
    try:
        assert cli(["up", "rs", "--detach"], fake_env).returncode == 0
        wait_for(lambda: (record_json(fake_env, "rs") or {}).get("restarts", 0) >= 1, 30)
        wait_for(lambda: len(dist_stores_in_log(fake_env, "rs")) >= 2, 30)
        first = dist_stores_in_log(fake_env, "rs")[0]
        assert not os.path.exists(first)  # removed when the crashed start was stopped
    finally:
        assert cli(["down", "rs"], fake_env).returncode == 0
    assert [s for s in dist_stores_in_log(fake_env, "rs") if os.path.exists(s)] == []
    assert_nothing_left(tag, port)
