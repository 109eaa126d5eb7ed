"""Stopping a server from outside its supervisor (`down`, a claim clearing a stale record): the supervisor
first (it stops its tree cleanly), then whatever of the recorded tree is left, its shared memory, its
file stores and its record. A pid counts only with its recorded start time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from vllm_launcher.machine import records, system
from vllm_launcher.machine.records import AnyRecord
from vllm_launcher.supervise import procs

SUPERVISOR_KILL_MARGIN_S = 12.0
MAX_HANDOVERS = 3  # claim → daemon is one; more would be a loop


@dataclass
class DownResult:
    name: str
    signals: list[str]
    survivors: list[int]
    port_free: bool
    port_holder: str | None
    shm_removed: list[str]
    seconds: float
    record_error: str | None = None  # the record could not be removed (a read-only or unwritable directory)


def _stop_supervisor(record: AnyRecord, timeout_s: float) -> list[str]:
    """SIGTERM to RECORD's supervisor and a wait for it; SIGKILL when it outlives the wait."""
    signals = []
    pid = int(record.supervisor_pid or 0)
    if records.valid_name(record.name):
        records.request_stop(record.name, timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    # The supervisor's polite stop takes at most TIMEOUT_S, its SIGKILL of the tree ~10 s more.
    deadline = time.monotonic() + timeout_s + SUPERVISOR_KILL_MARGIN_S
    while records.supervisor_alive(record) and time.monotonic() < deadline:
        time.sleep(0.05)
    signals.append("SIGTERM to its supervisor")
    if records.supervisor_alive(record):
        signals.append("SIGKILL to its supervisor")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    return signals


def cleanup(record: AnyRecord, timeout_s: float = 30.0) -> DownResult:
    """Stop a server and everything it left: the supervisor first (it stops its tree cleanly), then any
    process of the recorded tree still alive, its /dev/shm segments, and the record."""
    started = time.monotonic()
    signals: list[str] = []
    stopped: set[tuple[object, object]] = set()
    # The supervisor may hand over while we wait (the claiming `up --detach` to its daemon): the record then
    # names a new one, which is stopped too, so that nothing starts behind our back.
    while (records.supervisor_alive(record) and record.supervisor_pid != os.getpid()
           and (record.supervisor_pid, record.supervisor_create_time) not in stopped
           and len(stopped) < MAX_HANDOVERS):
        stopped.add((record.supervisor_pid, record.supervisor_create_time))
        signals += _stop_supervisor(record, timeout_s)
        current = records.read_any(record.name) if records.valid_name(record.name) else None
        if current is None:
            break
        record = current
    members = procs.members_from_list(record.tree)
    if record.server_pid and record.server_create_time:
        members.setdefault(int(record.server_pid), float(record.server_create_time))
    pgid = None
    if record.pgid and record.started_at > 0 and (records.server_alive(record) or procs.alive(members)):
        # Processes of the group that appeared after the last refresh (and no older stranger) are ours.
        for pid, created in procs.group_members(int(record.pgid)).items():
            if created >= record.started_at - 1:
                members.setdefault(pid, created)
        pgid = int(record.pgid) if records.server_alive(record) else None
    result = procs.stop_tree(pgid, members, timeout_s)
    signals += result.signals
    removed = system.remove_shm(record.shm_segments)
    if isinstance(record, records.Record) and record.log_path:
        procs.remove_dist_stores(Path(record.log_path))  # every start of this server's log: all were ours
    elif records.valid_name(record.name):  # a damaged record: our own log of that name, not one it names
        procs.remove_dist_stores(records.log_path_for(record.name))
    free = system.wait_port_free(record.host, record.port, 5.0) if record.port else True
    holder = None if free or not record.port else system.port_owner(record.port)
    record_error = None
    try:
        records.delete(record.name)
    except OSError as exc:  # the processes are stopped all the same: say so, and what is left
        record_error = f"cannot remove its record {records.record_path(record.name)}: {exc.strerror or exc}"
    return DownResult(record.name, signals, result.survivors, free, holder, removed,
                      time.monotonic() - started, record_error)
