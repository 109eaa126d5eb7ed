"""The supervisor loop: start vLLM, notice readiness, watch it, restart it with back-off, stop it cleanly.

Used in the foreground by `up` and in the background by `supervise.daemon`. It waits with `select` on
the server's pidfd and a signal wake-up pipe, so an exit or a stop request is noticed at once and an idle
supervisor costs ~0% CPU (one `/health` request a second).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vllm_launcher.machine import records, system
from vllm_launcher.machine.records import Record, State
from vllm_launcher.supervise import diagnose, history, procs, readiness
from vllm_launcher.supervise.lifecycle import (
    Outcome,
    Reporter,
    RestartPolicy,
    gpu_lock_plan,
    spawn_env,
)

READY_POLL_S = 0.025  # readiness is noticed within tens of ms of /health turning 200
HEALTH_INTERVAL_S = 2.0  # exits are noticed at once (pidfd); this catches a hung server
HEALTH_TIMEOUT_S = 3.0
TREE_REFRESH_S = 0.5  # while starting: children appear
WATCH_TREE_REFRESH_S = 10.0  # while serving: cheap enough to stay ~0% CPU
STOP_TIMEOUT_S = 30.0  # the polite stop of a serving server, unless `down --timeout` asked otherwise


@dataclass
class _Startup:
    """What the wait for readiness keeps track of."""

    started: float
    last_progress: float = 0.0
    last_tree: float = 0.0
    last_tick: float = 0.0
    phase: str | None = None
    last_line: str = ""
    memory: int | None = None
    lines_seen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.last_progress = self.last_tree = self.started


class Supervisor:
    """Owns one server: RECORD says what to run; the supervisor keeps the record up to date."""

    def __init__(self, record: Record, reporter: Reporter | None = None,
                 policy: RestartPolicy | None = None, stall_timeout_s: float | None = None) -> None:
        self.record = record
        self.reporter = reporter or Reporter()
        self.policy = policy or RestartPolicy(mode=record.restart_policy)
        self.history_key = history.key_for(record.preset, record.model, record.device)
        self.eta_s = history.eta_s(self.history_key)
        self.stall_timeout_s = stall_timeout_s or history.stall_timeout_s(self.eta_s)
        self.proc: subprocess.Popen | None = None
        self.tree: procs.Tree | None = None
        self.env = spawn_env(record)
        self.api_key = self.env.get("VLLM_API_KEY")
        self.stop_requested = False
        self.stop_signals = 0  # a second Ctrl-C/SIGTERM while stopping kills the tree at once
        self._wake_r: int | None = None
        self._pidfd: int | None = None
        self._shm_before: set[str] = set()
        self._spawn_offset = 0
        self._follower: readiness.LogFollower | None = None
        self._write_error: str | None = None  # the last failed record write, reported once

    # ------------------------------------------------------------------------------ signals, waits

    @contextlib.contextmanager
    def handling_signals(self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
                         ) -> Iterator[None]:
        """Turn SIGINT/SIGTERM/SIGHUP into a stop request that wakes the loop (main thread only)."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        previous_fd = signal.set_wakeup_fd(wake_w)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in signals}
        self._wake_r = wake_r
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)
            self._wake_r = None
            os.close(wake_r)
            os.close(wake_w)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stop_requested = True
        self.stop_signals += 1

    def _sleep(self, seconds: float) -> None:
        """Sleep up to SECONDS; wake early when the server exits or a signal arrives."""
        fds = [fd for fd in (self._wake_r, self._pidfd) if fd is not None]
        if self.stop_requested or seconds <= 0:
            return
        try:
            ready, _w, _x = select.select(fds, [], [], seconds)
        except InterruptedError:
            return
        if self._wake_r is not None and self._wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 512)

    # ------------------------------------------------------------------------------------ record

    def _save(self, **changes: object) -> None:
        """Update the record (the one writer while this supervisor lives). A write that fails (full or
        read-only disk, a lock that cannot be taken) is reported once and supervision goes on: the server
        matters more than its record, and `down` finds the tree from the last record written."""
        for key, value in changes.items():
            setattr(self.record, key, value)
        try:
            with records.locked(self.record.name):
                records.write(self.record)
        except (OSError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            if error != self._write_error:
                self._write_error = error
                self.report(f"warning: cannot write the record {records.record_path(self.record.name)} "
                             f"({error}); still supervising")
            return
        if self._write_error is not None:
            self._write_error = None
            self.report("the record is written again")

    def report(self, text: str) -> None:
        """An event line that must not take the supervisor down when its own log cannot be written."""
        with contextlib.suppress(OSError, ValueError):
            self.reporter.event(text)

    def _set_state(self, new_state: State, reason: str = "", **changes: object) -> None:
        """The one way the state changes: checked against records.TRANSITIONS, then saved with CHANGES."""
        records.check_transition(self.record.state, new_state)
        if new_state != self.record.state or reason != self.record.reason or changes:
            self._save(state=new_state.value, reason=reason, **changes)

    # ------------------------------------------------------------------------------------- start

    def _spawn(self) -> None:
        self._shm_before = system.shm_snapshot()
        log_path = Path(self.record.log_path)
        self._spawn_offset = log_path.stat().st_size if log_path.exists() else 0
        self.proc = procs.spawn(self.record.argv, self.env, log_path)
        self.tree = procs.Tree.of(self.proc.pid)
        try:
            self._pidfd = os.pidfd_open(self.proc.pid)
        except (AttributeError, OSError):
            self._pidfd = None  # older kernels: the loops still poll
        created = self.tree.members.get(self.proc.pid)
        self._save(server_pid=self.proc.pid, server_create_time=created, pgid=self.proc.pid,
                   tree=self.tree.as_list(), shm_segments=[], started_at=time.time(), ready_at=None,
                   log_offset=self._spawn_offset)

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    @contextlib.contextmanager
    def _start_locks(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for name, exclusive in gpu_lock_plan(self.record):
                stack.enter_context(records.file_lock(
                    records.locks_dir() / f"{name}.lock", exclusive=exclusive,
                    on_wait=lambda n=name: self.reporter.event(f"waiting for {n}: another server "
                                                               "is starting")))
            yield

    def start_once(self, timeout_s: float | None = None) -> Outcome:
        """Spawn the server and wait until it is ready, exits, stalls, times out or a stop is asked."""
        with self._start_locks():
            if self.stop_requested:
                return Outcome("stopped")
            try:
                self._spawn()
            except OSError as exc:  # the log cannot be opened (read-only disk), the interpreter is gone
                return Outcome("exited", None, f"cannot start vLLM: {exc.strerror or exc}")
            return self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float | None) -> Outcome:
        assert self.proc is not None and self.tree is not None
        follower = readiness.LogFollower(Path(self.record.log_path))
        follower.offset = self._spawn_offset  # this start's lines only
        self._follower = follower
        start = _Startup(started=time.monotonic())
        while True:
            now = time.monotonic()
            self._read_start_log(follower, start, now)
            if self.stop_requested:
                self._set_state(State.STOPPING, "stopping on request")
                self._stop_server(starting=True)
                return Outcome("stopped", seconds=now - start.started)
            returncode = self.proc.poll()
            if returncode is not None:
                return self._exited_while_starting(follower, start, returncode, now)
            verdict = self._ready_verdict(start, now)
            if verdict is None:
                verdict = self._too_slow(start, now, timeout_s)
            if verdict is not None:
                return verdict
            if now - start.last_tree >= TREE_REFRESH_S:
                start.last_tree = now
                self._refresh_tree(shm=True)
                start.memory = procs.tree_rss_bytes(procs.alive(self.tree.members))
            if now - start.last_tick >= 0.25:
                start.last_tick = now
                self.reporter.tick(now - start.started, self.eta_s, start.phase, start.last_line,
                                   start.memory)
            self._sleep(READY_POLL_S)

    def _read_start_log(self, follower: readiness.LogFollower, start: _Startup, now: float) -> None:
        """New log lines: shown, kept for the diagnosis, scanned for the next phase; any output is
        progress."""
        offset_before = follower.offset
        for line in follower.read_lines():
            start.last_line = line
            start.lines_seen.append(line)
            self.reporter.line(line)
            found = readiness.detect_phase(line)
            if found and readiness.phase_index(found) > readiness.phase_index(start.phase):
                start.phase = found
                self.reporter.phase(found)
        if follower.offset != offset_before:
            start.last_progress = now  # any output counts, progress bars included

    def _exited_while_starting(self, follower: readiness.LogFollower, start: _Startup, returncode: int,
                               now: float) -> Outcome:
        lines = start.lines_seen + follower.read_lines()
        if follower.partial:
            lines.append(follower.partial)
        self._stop_server(starting=True)  # the API server is gone; its children may not be
        diagnosis = diagnose.diagnose(lines[-400:])
        return Outcome("exited", returncode, f"vLLM exited with code {returncode} during start-up", diagnosis,
                       lines[-40:], now - start.started)

    def _ready_verdict(self, start: _Startup, now: float) -> Outcome | None:
        """Ready (the port answers and its listener is ours), a conflict (it answers for someone else), or
        None (not yet)."""
        probe = readiness.probe(self.record.host, self.record.port, self.record.served_model, self.api_key,
                                timeout_s=HEALTH_TIMEOUT_S)
        if not probe.ready:
            return None
        foreign = self._foreign_listener()
        if foreign is None:
            return Outcome("ready", seconds=time.monotonic() - start.started)
        if not foreign:  # nobody visible listens yet; ask again at the next poll
            return None
        self._stop_server(starting=True)
        cause = (f"port {self.record.port} taken by {foreign}: /health answered for a process outside "
                 "this server's tree")
        return Outcome("conflict", None, cause,
                       diagnose.Diagnosis("port-taken", cause, f"stop {foreign}, or pick another --port"),
                       seconds=now - start.started)

    def _too_slow(self, start: _Startup, now: float, timeout_s: float | None) -> Outcome | None:
        """A stalled log (no output for the stall timeout) or the --timeout passed: stop it."""
        if now - start.last_progress > self.stall_timeout_s:
            reason = (f"no progress in the log for {self.stall_timeout_s:.0f} s "
                      f"(stalled in phase: {start.phase or 'start'})")
        elif timeout_s is not None and now - start.started > timeout_s:
            reason = f"not ready after --timeout {timeout_s:g} s"
        else:
            return None
        self._stop_server(starting=True)
        return Outcome("timeout", reason=reason, tail=readiness.tail_lines(Path(self.record.log_path), 40),
                       seconds=now - start.started)

    def _foreign_listener(self) -> str | None:
        """None when the process listening on our port is in our tree (readiness counts only for a server we
        own); else who listens instead ("pid N (cmdline)"), or "" when no listener is visible yet."""
        self._refresh_tree(shm=False)
        members = set(self.tree.members) if self.tree else set()
        found = system.listeners(self.record.port)
        if not found:
            return ""
        strangers = [pid for pid in found if pid not in members]
        if not strangers:
            return None
        return system.describe_pid(strangers[0]) if strangers[0] else "a process this user may not see"

    def _refresh_tree(self, shm: bool) -> None:
        if self.tree is None or self.proc is None:
            return
        changed = self.tree.refresh(self.proc.pid)
        if shm:
            changed = self.tree.refresh_shm() or changed
        if changed:
            self._save(tree=self.tree.as_list(), shm_segments=sorted(self.tree.shm_segments))

    # ------------------------------------------------------------------------------------- watch

    def watch(self) -> Outcome:
        """While ready: `/health` once a second; returns when the server exits, stays unhealthy, or a
        stop is asked."""
        assert self.proc is not None
        failures = 0
        last_tree = time.monotonic()
        healthy_since = time.monotonic()
        follower = self._follower if self.reporter.follows_log else None
        next_health = time.monotonic() + HEALTH_INTERVAL_S
        while True:
            if follower is not None:
                for line in follower.read_lines():
                    self.reporter.line(line)
                self._sleep(min(0.1, max(0.0, next_health - time.monotonic())))
            else:
                self._sleep(max(0.0, next_health - time.monotonic()))
            if self.stop_requested:
                return Outcome("stopped")
            if self.proc.poll() is None and time.monotonic() < next_health:
                continue
            next_health = time.monotonic() + HEALTH_INTERVAL_S
            returncode = self.proc.poll()
            if returncode is not None:
                tail = readiness.tail_lines(Path(self.record.log_path), 40)
                return Outcome("exited", returncode, f"vLLM exited with code {returncode}",
                               diagnose.diagnose(tail), tail)
            status = readiness.health(self.record.host, self.record.port, HEALTH_TIMEOUT_S)
            if status == 200:
                failures = 0
                if self.record.state != State.READY:
                    self._set_state(State.READY)
                    self.report("healthy again")
                if time.monotonic() - healthy_since > self.policy.reset_after_s and self.record.restart_times:
                    self._save(restart_times=[])  # a long healthy stretch: back-off starts over
            else:
                failures += 1
                healthy_since = time.monotonic()
                what = f"/health answered {status}" if status else "/health did not answer"
                self._set_state(State.UNHEALTHY, f"{what} ({failures} in a row)")
                self.report(f"unhealthy: {what} ({failures}/{self.policy.unhealthy_after})")
                if failures >= self.policy.unhealthy_after:
                    return Outcome("exited", None, f"{what} {failures} times in a row")
            if time.monotonic() - last_tree >= WATCH_TREE_REFRESH_S:
                last_tree = time.monotonic()
                self._refresh_tree(shm=True)

    # -------------------------------------------------------------------------------------- stop

    def _stop_server(self, timeout_s: float = STOP_TIMEOUT_S,
                     starting: bool = False) -> procs.StopResult | None:
        """Stop the whole tree, free its /dev/shm segments; on a GPU, wait for its memory to be freed.
        STARTING: not ready yet, so nothing to drain: SIGINT, a grace of procs.STARTING_GRACE_S, SIGKILL."""
        if self.proc is None or self.tree is None:
            return None
        self._refresh_tree(shm=True)
        pids = list(self.tree.members)
        if self.stop_requested:
            # vLLM can take a while to drain and honour SIGINT; say how to cut that short.
            grace = f"SIGINT, killed after {procs.STARTING_GRACE_S:g} s; " if starting else ""
            self.report(f"stopping {self.record.name} ({grace}again to kill it now)")
        seen = self.stop_signals
        polite = procs.STARTING_STOP if starting else procs.RUNNING_STOP
        result = procs.stop_tree(self.tree.pgid, self.tree.members,
                                 procs.STARTING_GRACE_S if starting else timeout_s, reap=self.proc,
                                 hurry=lambda: self.stop_signals > seen, polite=polite)
        new_psm = {n for n in system.shm_snapshot() - self._shm_before if n.startswith("psm_")}
        system.remove_shm(self.tree.shm_segments | new_psm)
        procs.remove_dist_stores(Path(self.record.log_path), self._spawn_offset)  # this start's only
        if self.record.device == "cuda":
            system.wait_gpu_released(pids, timeout_s=30.0)
        self._close_pidfd()
        if result.survivors:
            self.report(f"warning: processes survived SIGKILL: {result.survivors}")
        return result

    # --------------------------------------------------------------------------------------- run

    def run(self, timeout_s: float | None = None) -> int:
        """The whole life of the server: 0 when it was stopped on request, 1 when it failed."""
        self._save(reason="", restarts=self.record.restarts)  # the claim wrote STARTING; now it is ours
        ever_ready = False
        while True:
            outcome = self.start_once(timeout_s if not ever_ready else None)
            failed_to_start = outcome.kind != "ready"
            if outcome.kind == "stopped":
                return self._finish_stopped()
            if outcome.kind == "conflict":
                return self._finish_failed(outcome, "not restarted: the port belongs to another process")
            if outcome.kind == "ready":
                ever_ready = True
                outcome = self._serve(outcome)
                if outcome.kind == "stopped":
                    return self._finish_stopped()
            code = self._after_exit(outcome, ever_ready, failed_to_start)
            if code is not None:
                return code

    def _serve(self, ready: Outcome) -> Outcome:
        """Ready: record it, tell the user, watch until the server exits, turns unhealthy or is stopped; the
        tree is stopped in every case before returning."""
        self._refresh_tree(shm=True)
        with contextlib.suppress(OSError, TimeoutError):  # history is a nicety: a full disk loses it
            history.record_ready(self.history_key, ready.seconds)
        self._set_state(State.READY, "", ready_at=time.time(), diagnosis={})
        with contextlib.suppress(OSError, ValueError):
            self.reporter.ready(self.record, ready.seconds)
        outcome = self.watch()
        if outcome.kind == "stopped":
            self._set_state(State.STOPPING, "stopping on request")
            self._stop_server(records.requested_stop_timeout(self.record.name, STOP_TIMEOUT_S))
        else:
            self._stop_server()  # exited or unhealthy: kill what is left before anything else
        return outcome

    def _after_exit(self, outcome: Outcome, ever_ready: bool, failed_to_start: bool) -> int | None:
        """The exit code when the supervisor is done (failed for good, or a clean exit not to restart); else
        None after the back-off, to start again."""
        if not ever_ready:
            return self._finish_failed(outcome)  # a start-up failure: report it, do not loop
        if failed_to_start and outcome.diagnosis is not None and outcome.diagnosis.recurring:
            return self._finish_failed(outcome, "it would fail the same way again")
        if self.policy.mode == "never" or (self.policy.mode == "on-failure" and outcome.returncode == 0):
            if outcome.returncode != 0:
                return self._finish_failed(outcome)
            self._set_state(State.STOPPED, "vLLM exited by itself (code 0); not restarted")
            self.report("stopped")
            return 0
        now = time.time()
        recent = [t for t in self.record.restart_times if now - t < self.policy.window_s]
        if len(recent) >= self.policy.max_restarts:
            return self._finish_failed(outcome, f"gave up after {len(recent)} restarts within "
                                       f"{self.policy.window_s:g} s")
        delay = self.policy.delay_s(len(recent))
        reason = f"{outcome.reason}; restarting in {delay:g} s"
        self._set_state(State.BACKOFF, reason,
                        diagnosis=outcome.diagnosis.as_dict() if outcome.diagnosis else {})
        self.report(reason)
        deadline = time.monotonic() + delay
        while not self.stop_requested and time.monotonic() < deadline:
            self._sleep(deadline - time.monotonic())
        if self.stop_requested:
            return self._finish_stopped()
        self._set_state(State.STARTING, "", restarts=self.record.restarts + 1,
                        restart_times=[*recent, time.time()])
        return None

    def _finish_stopped(self) -> int:
        if self.record.state != State.STOPPING:
            self._set_state(State.STOPPING, "stopping on request")
        self._set_state(State.STOPPED, "stopped on request")
        self.report("stopped")
        return 0

    def _finish_failed(self, outcome: Outcome, why: str = "") -> int:
        reason = outcome.reason + (f"; {why}" if why else "")
        self._set_state(State.FAILED, reason,
                        diagnosis=outcome.diagnosis.as_dict() if outcome.diagnosis else {})
        with contextlib.suppress(OSError, ValueError):
            self.reporter.failed(self.record, outcome)
        return 1
