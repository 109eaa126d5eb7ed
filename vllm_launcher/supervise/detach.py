"""Where the supervisor runs: in this process (`up` in the foreground), or as a background daemon in its own
session (`up --detach`), whose start-up this process shows until the record says ready or failed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from vllm_launcher.base.errors import LaunchError
from vllm_launcher.base.output import Result
from vllm_launcher.machine import records
from vllm_launcher.machine.records import Record
from vllm_launcher.supervise import history, procs, readiness


def run_foreground(record: Record, verbose: bool = False, reporter: Any = None) -> int:
    """Supervise RECORD (already claimed) in this process until Ctrl-C (or `down`): 0 after a clean stop, 1
    when it failed. The terminal shows the start-up (supervise.display)."""
    from vllm_launcher.supervise.display import TerminalReporter
    from vllm_launcher.supervise.supervisor import Supervisor

    reporter = reporter or TerminalReporter(record.name, echo=True, verbose=verbose)
    reporter.event(f"starting {record.preset} on {record.endpoint} (log: {record.log_path})")
    me = psutil.Process()
    record.supervisor_pid, record.supervisor_create_time = me.pid, me.create_time()
    supervisor = Supervisor(record, reporter)
    with supervisor.handling_signals():
        code = supervisor.run(record.timeout_s)
    if record.state == records.STOPPED:
        try:
            records.delete(record.name)
        except OSError as exc:  # stopped all the same; `status` shows it stale, `down` removes it later
            reporter.event(f"cannot remove the record: {exc.strerror or exc}")
    return code


def run_detached(record: Record) -> Result:
    """Start the background supervisor of RECORD (already claimed) and show its start-up until ready or
    failed. Ctrl-C, or a SIGTERM/SIGHUP (`down` signals this process while the claim still names it),
    stops the daemon and what it started before this process exits: its exit is what `down` waits for."""
    from vllm_launcher.supervise.display import TerminalReporter, failure_text, ready_text

    reporter = TerminalReporter(record.name, echo=False)
    daemon: subprocess.Popen | None = None
    try:
        with _signals_blocked():  # a stop that arrives while spawning finds the daemon's handle set
            daemon = start_detached(record)
        result = wait_detached(record.name, daemon, reporter)
    except KeyboardInterrupt:
        reporter.done()
        stop_handoff(record.name, daemon)
        why = "interrupted" if _interrupts.signum == signal.SIGINT else f"{_interrupts.signum.name} received"
        return Result(notes=[f"vllm-launch: {record.name}: {why}, stopped before it was ready"], code=130)
    reporter.done()
    if result.ok:
        return Result(text=ready_text(result.record, result.seconds))
    return Result(notes=[failure_text(result.record, result.tail, result.record.diagnosis,
                                      result.record.reason)], code=1)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
DAEMON_STOP_WAIT_S = 60.0  # its polite stop of a starting server (SIGINT, grace, SIGKILL) fits easily


class _Interrupts:
    """SIGINT/SIGTERM/SIGHUP raise KeyboardInterrupt, except while held (then once, when let go)."""

    def __init__(self) -> None:
        self.holding = False
        self.pending = False
        self.signum = signal.SIGINT  # the last one: Ctrl-C, or a stop from outside (`down`: SIGTERM)

    def handler(self, signum: int, _frame: object) -> None:
        self.signum = signal.Signals(signum)
        if self.holding:
            self.pending = True
            return
        raise KeyboardInterrupt


_interrupts = _Interrupts()


@contextlib.contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, as Ctrl-C does: from the claim on, `up --detach` is the
    record's supervisor until its daemon takes over, and `down` stops it with SIGTERM."""
    previous = {sig: signal.signal(sig, _interrupts.handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Hold a stop back while the daemon is spawned, so that it finds the daemon's handle set. (Not with
    the signal mask: the daemon would inherit it and never see a SIGTERM.)"""
    _interrupts.holding, _interrupts.pending = True, False
    try:
        yield
    finally:
        _interrupts.holding = False
    if _interrupts.pending:
        _interrupts.pending = False
        raise KeyboardInterrupt


def stop_handoff(name: str, daemon: subprocess.Popen | None) -> None:
    """Stop the daemon this `up` spawned (SIGTERM: it stops its server, or never starts one), wait for it,
    then clean up whatever the record still names. The daemon is signalled by its handle, not by the
    record: it may not have written its pid there yet."""
    from vllm_launcher.supervise.stop import cleanup

    if daemon is not None and daemon.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=DAEMON_STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            daemon.kill()  # its tree is in the record: cleanup below stops it
            daemon.wait()
    current = records.read_any(name)
    if current is not None:
        cleanup(current)


def start_detached(record: Record) -> subprocess.Popen:
    """Start the background supervisor for RECORD (already written) in its own session."""
    log = records.supervisor_log_path(record.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "vllm_launcher.supervise.daemon", record.name],
            stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
            close_fds=True, env=dict(os.environ),
        )


@dataclass
class DetachResult:
    record: Record
    ok: bool
    seconds: float
    tail: list[str] = field(default_factory=list)


def wait_detached(name: str, daemon: subprocess.Popen, reporter: Any) -> DetachResult:
    """Show the start-up of a detached server until its record says ready or failed."""
    started = time.monotonic()
    follower: readiness.LogFollower | None = None
    phase: str | None = None
    last_line = ""
    first = records.read(name)
    eta = history.eta_s(history.key_for(first.preset, first.model, first.device)) if first else None
    while True:
        record = records.read(name)
        if record is not None and follower is None and record.started_at:
            follower = readiness.LogFollower(Path(record.log_path))
            follower.offset = record.log_offset  # this start's lines only
        if follower is not None:
            for line in follower.read_lines():
                last_line = line
                reporter.line(line)
                found = readiness.detect_phase(line)
                if found and readiness.phase_index(found) > readiness.phase_index(phase):
                    phase = found
                    reporter.phase(found)
        if record is not None and record.state == records.READY:
            return DetachResult(record, True, time.monotonic() - started)
        if record is not None and record.state in (records.FAILED, records.STOPPED):
            return DetachResult(record, False, time.monotonic() - started,
                                readiness.tail_lines(Path(record.log_path), 20))
        if daemon.poll() is not None:
            # The supervisor died without a verdict: its own log says why.
            tail = readiness.tail_lines(records.supervisor_log_path(name), 20)
            if record is None:
                raise LaunchError(f"the supervisor of {name} exited ({daemon.returncode}): "
                                  f"{' | '.join(tail)}")
            record.reason = record.reason or f"the supervisor exited with code {daemon.returncode}"
            return DetachResult(record, False, time.monotonic() - started, tail)
        memory = procs.tree_rss_bytes(procs.alive(procs.members_from_list(record.tree))) if record else None
        reporter.tick(time.monotonic() - started, eta, phase, last_line, memory)
        time.sleep(0.05)
