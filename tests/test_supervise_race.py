"""`down NAME` while `up NAME --detach` hands its claim to the background supervisor.

The claim names the `up` process as the record's supervisor until the daemon it spawns takes over. A
`down` in that window used to stop `up` alone, say "port ... is free" and exit 0, while the daemon went
on to start and serve. tests/slow_handoff widens the window (a pause in the daemon's first read of the
record, before or after it), so the interleaving happens every time instead of in 2 tries of 12.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import cli, port_is_free, record_json, tagged_processes, wait_for, write_preset

SLOW_HANDOFF_DIR = Path(__file__).parent / "slow_handoff"


@pytest.mark.parametrize("pause_at", ["after", "before"])
def test_down_during_the_handoff_stops_the_daemon_too(fake_env, tag, port, pause_at):
    write_preset(fake_env, "race", port)
    fake_env["PYTHONPATH"] = os.pathsep.join([str(SLOW_HANDOFF_DIR), fake_env["PYTHONPATH"]])
    fake_env.update(SLOW_HANDOFF_S="1.5", SLOW_HANDOFF_AT=pause_at)
    up = subprocess.Popen([sys.executable, "-m", "vllm_launcher", "up", "race", "--detach"], env=fake_env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    daemons: list[psutil.Process] = []
    try:
        # The claim is written: its supervisor is `up` itself, the daemon has not taken over yet.
        wait_for(lambda: (r := record_json(fake_env, "race")) and r.get("supervisor_pid") == up.pid, 30)
        daemons = wait_for(lambda: [p for p in psutil.Process(up.pid).children()
                                    if "vllm_launcher.supervise.daemon" in " ".join(p.cmdline())], 10)
        down = cli(["down", "race"], fake_env)
        assert down.returncode == 0, down.stderr
        _out, up_err = up.communicate(timeout=30)
        assert up.returncode == 130  # the start did not happen, and `up` says so
        assert "race: SIGTERM received, stopped before it was ready" in up_err
        # Whatever `down` reported, nothing may start afterwards: give a daemon that survived time to
        # spawn the server (the fake is healthy within a second), then look.
        time.sleep(3.0)
        assert [d.pid for d in daemons if d.is_running() and d.status() != psutil.STATUS_ZOMBIE] == []
        assert tagged_processes(tag) == []
        assert port_is_free(port)
        assert record_json(fake_env, "race") is None
    finally:
        up.kill()
        for proc in [*daemons, *tagged_processes(tag)]:
            with contextlib.suppress(psutil.Error):
                proc.kill()


def test_the_daemon_does_not_start_a_server_whose_claimer_is_gone(fake_env, tag, port):
    """`up` was killed (or stopped by `down`) after its claim, before its daemon took over: the daemon
    must not start the server behind `down`'s back."""
    from vllm_launcher.machine import records
    from vllm_launcher.preset.schema import resolve
    from vllm_launcher.supervise.claim import make_record

    write_preset(fake_env, "orphaned", port)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    record = make_record(resolve("orphaned"), detach=True)
    record.state, record.supervisor_pid, record.supervisor_create_time = "starting", gone.pid, time.time()
    records.write(record)
    daemon = subprocess.run([sys.executable, "-m", "vllm_launcher.supervise.daemon", "orphaned"],
                            env=fake_env, capture_output=True, text=True, timeout=60)
    assert daemon.returncode == 1
    assert "not supervising orphaned: the `up` that claimed it has exited" in daemon.stderr
    assert tagged_processes(tag) == [] and port_is_free(port)
