"""The state registry: one JSON record per server under `paths.state_dir()`, written atomically.

A record names the processes it owns by pid *and* start time (psutil's create_time), so a pid that the
kernel reused for another process is not mistaken for ours. Writers hold a per-name lock (fcntl).
Secrets never reach a record: `secret_env` stores only the names of the user's variables.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vllm_launcher import atomic, paths

# Life cycle of a server, as `status` shows it.
STARTING, READY, UNHEALTHY, RESTARTING, FAILED, STOPPED = (
    "starting", "ready", "unhealthy", "restarting", "failed", "stopped")
# Shown by `status` when the record's supervisor is gone (SIGKILLed, machine rebooted, pid reused).
STALE = "stale"
LIVE_STATES = (STARTING, READY, UNHEALTHY, RESTARTING)
# A create_time read twice by psutil can differ by rounding; anything closer is the same process.
CREATE_TIME_TOLERANCE_S = 0.05


@dataclass
class Record:
    """Everything needed to show, restart and stop one server, even after its supervisor died."""

    name: str
    preset: str
    model: str
    served_model: str
    host: str
    port: int
    argv: list[str]
    log_path: str
    env: dict[str, str] = field(default_factory=dict)  # the preset's env only: never secrets
    secret_env: dict[str, str] = field(default_factory=dict)  # VLLM_API_KEY -> NAME of the user's var
    preset_source: str = ""
    device: str = "cuda"
    gpus: list[str] = field(default_factory=list)
    restart_policy: str = "on-failure"
    timeout_s: float | None = None
    mode: str = "foreground"  # or "detached"
    state: str = STARTING
    reason: str = ""  # why it failed or is restarting, one line
    diagnosis: dict[str, str] = field(default_factory=dict)  # {"cause", "fix", "code"}
    supervisor_pid: int | None = None
    supervisor_create_time: float | None = None
    server_pid: int | None = None
    server_create_time: float | None = None
    pgid: int | None = None
    tree: list[list[float]] = field(default_factory=list)  # [pid, create_time] of every process seen
    shm_segments: list[str] = field(default_factory=list)  # /dev/shm names the tree mapped
    started_at: float = 0.0  # epoch seconds of the current server's spawn
    log_offset: int = 0  # size of the log when the current server was spawned (the log is appended)
    ready_at: float | None = None
    created_at: float = 0.0  # first `up`
    restarts: int = 0
    restart_times: list[float] = field(default_factory=list)
    updated_at: float = 0.0

    @property
    def endpoint(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.endpoint}/v1"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Record:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def records_dir() -> Path:
    return paths.state_dir() / "servers"


def logs_dir() -> Path:
    return paths.state_dir() / "logs"


def locks_dir() -> Path:
    return paths.state_dir() / "locks"


def record_path(name: str) -> Path:
    return records_dir() / f"{name}.json"


def log_path_for(name: str) -> Path:
    return logs_dir() / f"{name}.log"


def supervisor_log_path(name: str) -> Path:
    return logs_dir() / f"{name}.supervisor.log"


def atomic_write_json(path: Path, data: object) -> None:
    """tmp + fsync + rename: a reader sees the old record or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write(record: Record) -> None:
    record.updated_at = time.time()
    atomic_write_json(record_path(record.name), record.to_json())


def read(name: str) -> Record | None:
    try:
        data = json.loads(record_path(name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    return Record.from_json(data)


def delete(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        record_path(name).unlink()


def list_records() -> list[Record]:
    found = []
    directory = records_dir()
    if not directory.is_dir():
        return []
    for path in sorted(directory.glob("*.json")):
        record = read(path.stem)
        if record is not None:
            found.append(record)
    return found


@contextlib.contextmanager
def locked(name: str, timeout_s: float = 10.0) -> Iterator[None]:
    """Hold the lock of server NAME (an flock on `locks/NAME.lock`), for read-modify-write of its record."""
    with file_lock(locks_dir() / f"{name}.lock", exclusive=True, timeout_s=timeout_s):
        yield


@contextlib.contextmanager
def file_lock(path: Path, exclusive: bool = True, timeout_s: float | None = None,
              on_wait: object = None) -> Iterator[None]:
    """An flock on PATH; polls so that a caller can show what it waits for (`on_wait()` once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    waited = False
    try:
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"timed out waiting for lock {path}") from None
                if not waited and callable(on_wait):
                    on_wait()
                waited = True
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # closing releases the flock


# ------------------------------------------------------------------------------------ liveness


def process_matches(pid: int | None, create_time: float | None) -> bool:
    """True when PID is alive and is the process we recorded (same start time), not a reused pid."""
    if not pid:
        return False
    import psutil

    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if create_time is None:
            return True
        return abs(proc.create_time() - float(create_time)) < CREATE_TIME_TOLERANCE_S
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def supervisor_alive(record: Record) -> bool:
    return process_matches(record.supervisor_pid, record.supervisor_create_time)


def server_alive(record: Record) -> bool:
    return process_matches(record.server_pid, record.server_create_time)


def effective_state(record: Record) -> str:
    """The state to show: the recorded one, or `stale` when a live-looking record lost its supervisor."""
    if record.state in LIVE_STATES and not supervisor_alive(record):
        return STALE
    return record.state
