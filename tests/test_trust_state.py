"""Trust in the state: races between commands, damaged records, full and read-only disks, ports held by
strangers, and a stop during start-up, with the fake vLLM and the real CLI in subprocesses.

The disk tests mount small tmpfs file systems (a full disk, a read-only one) over the state and output
directories: they need root or CAP_SYS_ADMIN, which CI has, and fail loudly without it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
from conftest import cli, port_is_free, record_json, status_of, tagged_processes, wait_for, write_preset

from vllm_launcher.machine import records


def servers(tag: str) -> list[psutil.Process]:
    """The fake API servers (not their engine children) of this test."""
    found = []
    for proc in tagged_processes(tag):
        try:
            if "FAKE_VLLM_ROLE" not in proc.environ():
                found.append(proc)
        except psutil.Error:
            continue
    return found


def assert_nothing_left(tag: str, port: int) -> None:
    wait_for(lambda: not tagged_processes(tag), timeout_s=10)
    assert port_is_free(port)


def up_in_background(env: dict[str, str], args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vllm_launcher", "up", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def records_dir(env: dict[str, str]) -> Path:
    path = Path(env["XDG_STATE_HOME"]) / "vllm-launch" / "servers"
    path.mkdir(parents=True, exist_ok=True)
    return path


def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


@pytest.fixture
def tmpfs():
    """mount(PATH, size, ro=False): a tmpfs over PATH for the test, unmounted afterwards."""
    mounted: list[Path] = []

    def mount(path: Path, size: str = "1m", ro: bool = False) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        options = f"size={size}" + (",ro" if ro else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs over {path} (the disk tests need root or CAP_SYS_ADMIN): "
                        f"{done.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill(directory: Path) -> Path:
    """Fill the file system of DIRECTORY until a write fails (ENOSPC); returns the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)
    return filler


# ------------------------------------------------------------------------------------------- races


def test_two_ups_with_one_name_at_once_start_exactly_one_server(fake_env, tag, port):
    write_preset(fake_env, "same", port)
    fake_env["FAKE_VLLM_START_S"] = "1"
    ups = [up_in_background(fake_env, ["same", "--detach"]) for _ in range(3)]
    results = [(p.wait(timeout=60), *p.communicate()) for p in ups]
    codes = sorted(code for code, _out, _err in results)
    assert codes == [0, 2, 2], results
    for code, _out, err in results:
        assert "Traceback" not in err
        if code == 2:
            assert "a server named same is already" in err and "server same (" in err  # names the holder
    assert len(servers(tag)) == 1
    assert [e["name"] for e in json.loads(cli(["status", "--json"], fake_env).stdout)] == ["same"]
    down = cli(["down", "same"], fake_env)
    assert down.returncode == 0, down.stderr
    assert_nothing_left(tag, port)


def test_two_names_on_one_port_at_once_start_exactly_one(fake_env, tag, port):
    write_preset(fake_env, "porty", port)
    fake_env["FAKE_VLLM_START_S"] = "1"
    ups = [up_in_background(fake_env, ["porty", "--detach", "--name", name]) for name in ("pa", "pb")]
    results = [(p.wait(timeout=60), *p.communicate()) for p in ups]
    assert sorted(code for code, _o, _e in results) in ([0, 1], [0, 2]), results
    loser = next(err for code, _o, err in results if code != 0)
    assert f"port {port}" in loser and "Traceback" not in loser
    assert len(servers(tag)) == 1
    assert cli(["down", "--all"], fake_env).returncode == 0
    assert_nothing_left(tag, port)


def test_a_port_claimed_by_another_name_is_refused_even_with_force(fake_env, tag, port):
    write_preset(fake_env, "first", port)
    assert cli(["up", "first", "--detach"], fake_env).returncode == 0
    second = cli(["up", "first", "--detach", "--name", "second", "--force"], fake_env)
    assert second.returncode == 2, second.stderr
    assert f"port {port} is already claimed by server first (ready on port {port}" in second.stderr
    assert len(servers(tag)) == 1 and record_json(fake_env, "second") is None
    assert cli(["down", "first"], fake_env).returncode == 0
    assert_nothing_left(tag, port)


def test_two_downs_at_once_both_end_cleanly(fake_env, tag, port):
    write_preset(fake_env, "twice", port)
    assert cli(["up", "twice", "--detach"], fake_env).returncode == 0
    downs = [subprocess.Popen([sys.executable, "-m", "vllm_launcher", "down", "twice"], env=fake_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=60), *p.communicate()) for p in downs]
    for code, _out, err in results:
        assert code in (0, 2) and "Traceback" not in err, results
    assert 0 in [code for code, _o, _e in results]
    assert_nothing_left(tag, port)


def test_status_never_fails_while_servers_come_and_go(fake_env, tag, port):
    write_preset(fake_env, "churn", port)
    stop = threading.Event()
    failures: list[str] = []

    def poll() -> None:
        while not stop.is_set():
            result = cli(["status", "--json"], fake_env)
            if result.returncode != 0 or "Traceback" in result.stderr:
                failures.append(result.stderr)
            json.loads(result.stdout)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        for _ in range(3):
            assert cli(["up", "churn", "--detach"], fake_env).returncode == 0
            assert cli(["down", "churn"], fake_env).returncode == 0
    finally:
        stop.set()
        poller.join()
    assert failures == []
    assert_nothing_left(tag, port)


# ---------------------------------------------------------------------------------- state machine


def test_transitions_are_checked():
    from vllm_launcher.machine.records import State

    records.check_transition("starting", State.READY)
    records.check_transition("ready", State.BACKOFF)
    records.check_transition("backoff", State.STARTING)
    records.check_transition("unhealthy", State.UNHEALTHY)  # a new reason while unhealthy
    for old, new in [("stopped", State.READY), ("failed", State.STARTING), ("starting", State.STOPPED),
                     ("stopping", State.READY), ("backoff", State.READY)]:
        with pytest.raises(records.InvalidTransition, match=f"from {old} to {new.value}"):
            records.check_transition(old, new)


def test_every_state_is_reachable_and_every_live_state_can_stop():
    from vllm_launcher.machine.records import State

    reachable = {State.STARTING}
    frontier = [State.STARTING]
    while frontier:
        for nxt in records.TRANSITIONS[frontier.pop()]:
            if nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    assert reachable == set(State)
    for live in records.LIVE_STATES:
        if live != State.STOPPING:
            assert State.STOPPING in records.TRANSITIONS[live]
        assert State.FAILED in records.TRANSITIONS[live]


def test_a_supervisor_walks_the_table_through_a_crash_and_a_stop(fake_env, tag, port):
    write_preset(fake_env, "walk", port)
    # 3 s of service before the crash: the first poll sees "ready" even on a loaded machine.
    fake_env.update(FAKE_VLLM_MODE="crash_after_ready", FAKE_VLLM_CRASH_AFTER_S="3")
    assert cli(["up", "walk", "--detach"], fake_env).returncode == 0
    seen = []

    def states() -> bool:
        current = (record_json(fake_env, "walk") or {}).get("state")
        if current and (not seen or seen[-1] != current):
            seen.append(current)
        return "backoff" in seen and seen[-1] in ("starting", "ready")

    wait_for(states, timeout_s=20, interval_s=0.01)
    assert cli(["down", "walk"], fake_env).returncode == 0
    assert seen[0] == "ready" and "backoff" in seen
    log = Path(status_log(fake_env, "walk")).read_text()
    assert "stopped" in log
    assert_nothing_left(tag, port)


def status_log(env: dict[str, str], name: str) -> str:
    return str(Path(env["XDG_STATE_HOME"]) / "vllm-launch" / "logs" / f"{name}.supervisor.log")


# ----------------------------------------------------------------------------------- ownership


class ForeignHandler(BaseHTTPRequestHandler):
    """Another program on the port that looks like vLLM from outside: /health 200, the model listed."""

    model = "fake/stranger"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = b"" if self.path == "/health" else json.dumps({"data": [{"id": self.model}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_readiness_counts_only_for_a_listener_in_our_tree(fake_env, tag, port):
    write_preset(fake_env, "stranger", port)
    fake_env["FAKE_VLLM_MODE"] = "never_ready"  # our server never binds; the stranger answers
    foreign = ThreadingHTTPServer(("127.0.0.1", port), ForeignHandler)
    thread = threading.Thread(target=foreign.serve_forever, daemon=True)
    thread.start()
    try:
        up = cli(["up", "stranger", "--detach", "--force"], fake_env)
    finally:
        foreign.shutdown()
        foreign.server_close()
    assert up.returncode == 1, up.stdout + up.stderr
    assert f"port {port} taken by pid {os.getpid()} (" in up.stderr
    record = record_json(fake_env, "stranger")
    assert record["state"] == "failed" and record["restarts"] == 0
    assert "not restarted" in record["reason"]
    assert cli(["down", "stranger"], fake_env).returncode == 0
    assert_nothing_left(tag, port)


# ------------------------------------------------------------------------------- damaged records


DAMAGED = {
    "halfwritten": '{"name": "halfwritten", "preset": "p", "port": 80',
    "notobject": "[1, 2, 3]",
    "missing": '{"name": "missing"}',
    "wrongtype": json.dumps({"name": "wrongtype", "preset": "p", "model": "m", "served_model": "m",
                             "host": "127.0.0.1", "port": "eighty", "argv": ["x"], "log_path": "/tmp/x"}),
    "badstate": json.dumps({"name": "badstate", "preset": "p", "model": "m", "served_model": "m",
                            "host": "127.0.0.1", "port": 80, "argv": ["x"], "log_path": "/tmp/x",
                            "state": "dancing"}),
    "binary": "\udcff\x00\x01",
    "othername": json.dumps({"name": "someone-else", "preset": "p", "model": "m", "served_model": "m",
                             "host": "127.0.0.1", "port": 80, "argv": ["x"], "log_path": "/tmp/x"}),
}


def test_damaged_records_are_shown_as_corrupt_and_never_fatal(fake_env, tag, port):
    directory = records_dir(fake_env)
    for name, text in DAMAGED.items():
        (directory / f"{name}.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    (directory / ".hidden.json").write_text("garbage")  # not a server name: ignored
    write_preset(fake_env, "fine", port)
    assert cli(["up", "fine", "--detach"], fake_env).returncode == 0

    listed = cli(["status", "--json"], fake_env)
    assert listed.returncode == 0, listed.stderr
    entries = {e["name"]: e for e in json.loads(listed.stdout)}
    assert entries["fine"]["state"] == "ready"
    for name in DAMAGED:
        assert entries[name]["state"] == "corrupt", entries[name]
        assert entries[name]["path"].endswith(f"{name}.json")
    table = cli(["status"], fake_env)
    assert table.returncode == 0 and "corrupt" in table.stdout and "halfwritten.json" in table.stdout
    for command in (["status", "halfwritten"], ["logs", "halfwritten"], ["doctor", "fine"]):
        result = cli(command, fake_env)
        no_traceback(result)
        assert result.returncode in (0, 1), (command, result.stderr)
    doctor = cli(["doctor", "--json"], fake_env, timeout=180)
    no_traceback(doctor)
    codes = [f["code"] for f in json.loads(doctor.stdout)["findings"]]
    assert codes.count("VL310") == len(DAMAGED)
    # A new server may take the name of a damaged record that names no live process.
    write_preset(fake_env, "halfwritten", port + 1 if port < 65535 else port - 1)
    down_all = cli(["down", "--all"], fake_env)
    assert down_all.returncode == 0, down_all.stderr
    assert sorted(p.name for p in directory.iterdir()) == [".hidden.json"]
    assert_nothing_left(tag, port)


def test_down_stops_what_a_damaged_record_names_when_pid_and_start_time_match(fake_env, tag, port):
    write_preset(fake_env, "victim", port)
    assert cli(["up", "victim", "--detach"], fake_env).returncode == 0
    path = records_dir(fake_env) / "victim.json"
    data = json.loads(path.read_text())
    del data["argv"]  # damaged, but its pids and start times are intact
    path.write_text(json.dumps(data))
    assert status_of(fake_env, "victim")["state"] == "corrupt"
    again = cli(["up", "victim", "--detach"], fake_env)
    assert again.returncode == 2 and "damaged" in again.stderr and "still run" in again.stderr
    down = cli(["down", "victim"], fake_env)
    assert down.returncode == 0, down.stderr
    assert "removed the damaged record of victim" in down.stdout
    assert_nothing_left(tag, port)
    assert not path.exists()


def test_a_pid_without_start_time_never_authorises_a_kill(fake_env):
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                 start_new_session=True)
    try:
        path = records_dir(fake_env) / "liar.json"
        for data in ({"name": "liar", "server_pid": bystander.pid, "supervisor_pid": bystander.pid,
                      "pgid": bystander.pid, "tree": [[bystander.pid, "x"]]},
                     {"name": "liar", "preset": "p", "model": "m", "served_model": "m", "host": "127.0.0.1",
                      "port": 1, "argv": ["x"], "log_path": "/tmp/x", "state": "ready",
                      "server_pid": bystander.pid, "supervisor_pid": bystander.pid, "pgid": bystander.pid,
                      "started_at": time.time()}):
            path.write_text(json.dumps(data))
            down = cli(["down", "liar"], fake_env)
            assert down.returncode == 0, down.stderr
            assert bystander.poll() is None, "a record without start times killed a process"
            assert not path.exists()
    finally:
        bystander.kill()
        bystander.wait()


# -------------------------------------------------------------------------------- stop while starting


@pytest.mark.parametrize("mode", ["never_ready,ignore_sigterm", "never_ready,ignore_signals"])
def test_down_during_start_up_takes_seconds(fake_env, tag, port, mode):
    """Before ready there is nothing to drain: SIGINT, a 2.5 s grace, then the whole tree is killed."""
    write_preset(fake_env, "slowstop", port)
    fake_env["FAKE_VLLM_MODE"] = mode
    up = up_in_background(fake_env, ["slowstop", "--detach"])
    try:
        wait_for(lambda: (record_json(fake_env, "slowstop") or {}).get("server_pid"), 20)
        wait_for(lambda: len(tagged_processes(tag)) >= 2, timeout_s=10)
        started = time.monotonic()
        down = cli(["down", "slowstop"], fake_env)
        took = time.monotonic() - started
        assert down.returncode == 0, down.stderr
        assert took < 5.0, f"down took {took:.1f} s"
        assert up.wait(timeout=30) == 1
    finally:
        up.kill()
    assert_nothing_left(tag, port)


# ------------------------------------------------------------------------------------------- disks


def test_up_refuses_a_read_only_state_directory_before_spawning(fake_env, tag, port, tmpfs):
    write_preset(fake_env, "ro", port)
    tmpfs(Path(fake_env["XDG_STATE_HOME"]) / "vllm-launch", ro=True)
    up = cli(["up", "ro", "--detach"], fake_env)
    assert up.returncode == 1 and up.stderr.count("\n") == 1, up.stderr
    assert "cannot write in" in up.stderr and "Read-only file system" in up.stderr
    assert tagged_processes(tag) == []


def test_up_refuses_a_full_state_directory_before_spawning(fake_env, tag, port, tmpfs):
    write_preset(fake_env, "full", port)
    tmpfs(Path(fake_env["XDG_STATE_HOME"]) / "vllm-launch", size="1m")
    up = cli(["up", "full"], fake_env)
    assert up.returncode == 1 and up.stderr.count("\n") == 1, up.stderr
    assert "KiB free" in up.stderr and "not starting full" in up.stderr
    assert tagged_processes(tag) == []


def test_a_supervisor_that_cannot_write_its_record_keeps_supervising(fake_env, tag, port, tmpfs):
    write_preset(fake_env, "nospace", port)
    directory = tmpfs(records_dir(fake_env), size="10m")
    fake_env.update(FAKE_VLLM_MODE="crash_after_ready", FAKE_VLLM_CRASH_AFTER_S="2")
    assert cli(["up", "nospace", "--detach"], fake_env).returncode == 0
    first = record_json(fake_env, "nospace")["server_pid"]
    filler = fill(directory)
    try:
        # The server crashes; the supervisor cannot record it, and restarts it all the same.
        wait_for(lambda: [p for p in servers(tag) if p.pid != first], timeout_s=30)
        log = Path(status_log(fake_env, "nospace"))
        wait_for(lambda: "cannot write the record" in log.read_text(), timeout_s=10)
        assert "still supervising" in log.read_text()
        # the last record that could be written
        assert record_json(fake_env, "nospace")["server_pid"] == first
    finally:
        filler.unlink()
    down = cli(["down", "nospace"], fake_env)
    assert down.returncode == 0, down.stderr
    assert_nothing_left(tag, port)


def test_render_output_onto_a_full_disk_leaves_nothing_half_written(tmp_path, tmpfs, isolated_xdg):
    out = tmpfs(tmp_path / "out", size="64k")
    filler = fill(out)
    result = cli(["render", "gpu-7b", "--format", "k8s", "-o", str(out)], isolated_xdg)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "No space left on device" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["filler"]  # no part of the three files, no temp file
    filler.unlink()
    assert cli(["render", "gpu-7b", "--format", "k8s", "-o", str(out)], isolated_xdg).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["deployment.yaml", "pvc.yaml", "service.yaml"]


def test_fit_save_onto_a_full_disk_is_one_line(tmp_path, tmpfs, isolated_xdg):
    presets = tmpfs(Path(isolated_xdg["XDG_CONFIG_HOME"]) / "vllm-launch" / "presets", size="64k")
    fill(presets)
    result = cli(["fit", "Qwen/Qwen2.5-Coder-7B-Instruct", "--device", "cuda", "--gpus", "1",
                  "--gpu-mem-gib", "24", "--save", "coder"], isolated_xdg)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("vllm-launch: error: cannot save")
    assert sorted(p.name for p in presets.iterdir()) == ["filler"]


def test_a_killed_up_leaves_a_record_the_next_command_cleans(fake_env, tag, port):
    """vllm-launch itself crashing (SIGKILL) between claim and supervision: the next `up` takes over."""
    write_preset(fake_env, "crashed", port)
    fake_env.update(FAKE_VLLM_MODE="slow_start", FAKE_VLLM_START_S="30")
    up = up_in_background(fake_env, ["crashed"])  # foreground: the supervisor is this process
    wait_for(lambda: (record_json(fake_env, "crashed") or {}).get("server_pid"), 20)
    up.send_signal(signal.SIGKILL)
    up.wait()
    assert status_of(fake_env, "crashed")["state"] == "stale"
    fake_env["FAKE_VLLM_START_S"] = "0.2"
    again = cli(["up", "crashed", "--detach"], fake_env)
    assert again.returncode == 0, again.stderr
    assert len(servers(tag)) == 1
    assert cli(["down", "crashed"], fake_env).returncode == 0
    assert_nothing_left(tag, port)
