"""100 start/stop cycles of the fake server through the supervisor's own API: nothing may accumulate
(processes, ports, /dev/shm segments, vLLM's /tmp/vllm_dist_* file stores, open file descriptors of the
supervisor)."""

from __future__ import annotations

import os
import sys

from conftest import FAKE_VLLM_DIR, kill_tagged, new_tag, port_is_free, tagged_processes

CYCLES = 100


def test_hundred_start_stop_cycles_leave_nothing(port, monkeypatch):
    from vllm_launcher.machine import records
    from vllm_launcher.supervise import procs
    from vllm_launcher.supervise.supervisor import Supervisor

    tag = new_tag()
    monkeypatch.setenv("PYTHONPATH", str(FAKE_VLLM_DIR))
    monkeypatch.setenv("FAKE_VLLM_TAG", tag)
    monkeypatch.setenv("FAKE_VLLM_START_S", "0")
    monkeypatch.setenv("FAKE_VLLM_DIST_STORE", "1")  # each start leaves /tmp/vllm_dist_<hex> unless removed
    record = records.Record(
        name="cycle", preset="cycle", model="m", served_model="m", host="127.0.0.1", port=port,
        argv=[sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", "m",
              "--port", str(port)],
        log_path=str(records.log_path_for("cycle")), device="cpu")
    supervisor = Supervisor(record)
    fds_before = len(os.listdir("/proc/self/fd"))
    all_pids: set[int] = set()
    try:
        for cycle in range(CYCLES):
            outcome = supervisor.start_once(timeout_s=30)
            assert outcome.kind == "ready", (cycle, outcome)
            result = supervisor._stop_server(timeout_s=5)
            all_pids |= set(supervisor.tree.members)
            assert result.survivors == [], cycle
            assert port_is_free(port), cycle
        assert tagged_processes(tag) == []
        assert [n for n in os.listdir("/dev/shm")
                if any(n.startswith(f"psm_fake{p}") for p in all_pids)] == []
        assert len(all_pids) >= 2 * CYCLES  # server and engine each time
        with open(record.log_path, encoding="utf-8") as log:
            stores = procs.dist_store_paths(log)
        assert len(stores) == CYCLES and not [s for s in stores if os.path.exists(s)]
        assert len(os.listdir("/proc/self/fd")) <= fds_before + 2  # no leaked pidfds or log handles
    finally:
        kill_tagged(tag)
