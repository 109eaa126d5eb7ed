"""The state registry: one JSON record per server under `paths.state_dir()`, written atomically.

A record names the processes it owns by pid *and* start time (psutil's create_time), so a pid that the
kernel reused for another process is not mistaken for ours; a pid without a start time never authorises a
kill. Writers hold a per-name lock (fcntl); a new server's name and port are claimed under one lock
(`claiming`), so two `up` cannot both take them. States change only along `TRANSITIONS` (as supervisord's
`_assertInState`). A file that is not a valid record is reported as `corrupt`, never fatal.
Secrets never reach a record: `secret_env` stores only the names of the user's variables.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import fcntl
import json
import os
import time
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vllm_launcher.base import atomic, paths
from vllm_launcher.base.inputs import valid_name


def endpoint_url(host: str, port: int) -> str:
    """Where a client reaches a server bound to HOST:PORT (a wildcard bind is reached on loopback)."""
    reach = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in reach:
        reach = "[::1]" if reach == "::" else f"[{reach}]"
    return f"http://{reach}:{port}"


class State(str, enum.Enum):
    """Life cycle of a server (supervisord's vocabulary: STARTING, RUNNING, BACKOFF, STOPPING, STOPPED,
    FATAL). A str enum: records hold the plain value, and `State.READY == "ready"`."""

    STARTING = "starting"
    READY = "ready"
    UNHEALTHY = "unhealthy"
    BACKOFF = "backoff"  # waiting to restart after a crash
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


# Every allowed change of state; anything else is a bug and raises InvalidTransition. A new `up` does not
# transition an old record: it claims the name and writes a new one (STARTING).
TRANSITIONS: dict[State, frozenset[State]] = {
    # STARTING -> BACKOFF: a restart after a crash that did not come up again is retried with back-off.
    State.STARTING: frozenset({State.READY, State.BACKOFF, State.STOPPING, State.FAILED}),
    State.READY: frozenset({State.UNHEALTHY, State.BACKOFF, State.STOPPING, State.STOPPED, State.FAILED}),
    State.UNHEALTHY: frozenset({State.READY, State.BACKOFF, State.STOPPING, State.STOPPED, State.FAILED}),
    State.BACKOFF: frozenset({State.STARTING, State.STOPPING, State.FAILED}),
    State.STOPPING: frozenset({State.STOPPED, State.FAILED}),
    State.STOPPED: frozenset(),
    State.FAILED: frozenset(),
}
STARTING, READY, UNHEALTHY, BACKOFF, STOPPING, STOPPED, FAILED = (
    State.STARTING, State.READY, State.UNHEALTHY, State.BACKOFF, State.STOPPING, State.STOPPED, State.FAILED)
# Shown by `status` (never stored): the record's supervisor is gone (SIGKILLed, machine rebooted, pid
# reused), or the file is not a valid record.
STALE = "stale"
CORRUPT = "corrupt"
LIVE_STATES = (State.STARTING, State.READY, State.UNHEALTHY, State.BACKOFF, State.STOPPING)
# A create_time read twice by psutil can differ by rounding; anything closer is the same process.
CREATE_TIME_TOLERANCE_S = 0.05
CLAIM_LOCK_TIMEOUT_S = 60.0


class InvalidTransition(RuntimeError):
    """A state change that TRANSITIONS does not allow: a bug in the supervisor, never the user's input."""


def check_transition(current: str, new: State) -> None:
    """Raise InvalidTransition unless CURRENT -> NEW is allowed (a same-state update of a live state, e.g. a
    new reason while unhealthy, is allowed)."""
    old = State(current)
    if new == old and old in LIVE_STATES:
        return
    if new not in TRANSITIONS[old]:
        raise InvalidTransition(f"server state cannot go from {old.value} to {new.value}")


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
    state: str = State.STARTING.value
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
    kind: str = "server"  # or "gateway": `vllm-launch gateway`, whose servers name it in managed_by
    managed_by: str = ""  # the gateway that started this server (it stops it when idle and on `down`)

    @property
    def endpoint(self) -> str:
        return endpoint_url(self.host, self.port)

    @property
    def base_url(self) -> str:
        return f"{self.endpoint}/v1"

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["state"] = str(self.state)
        return data

    @classmethod
    def from_json(cls, data: object) -> Record:
        """A record from parsed JSON. Raises ValueError naming what is wrong (not a mapping, a missing or
        ill-typed field, an unknown state): such a file is a CorruptRecord, never a crash."""
        if not isinstance(data, dict):
            raise TypeError(f"not a JSON object but {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        values = {}
        for spec in dataclasses.fields(cls):
            if spec.name not in data:
                if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                    raise ValueError(f"field {spec.name!r} is missing")
                continue
            value = data[spec.name]
            if not _is_type(value, hints[spec.name]):
                raise ValueError(f"field {spec.name!r} has the wrong type ({type(value).__name__})")
            values[spec.name] = value
        if values.get("state", State.STARTING.value) not in {s.value for s in State}:
            raise ValueError(f"unknown state {values['state']!r}")
        return cls(**values)


def _is_type(value: object, hint: object) -> bool:
    """isinstance for the few annotations a Record uses (str, int, float, None, list[...], dict[...])."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_is_type(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_is_type(v, item) for v in value)
    if origin is dict:
        key, item = typing.get_args(hint)
        return isinstance(value, dict) and all(_is_type(k, key) and _is_type(v, item)
                                               for k, v in value.items())
    return isinstance(value, hint)  # type: ignore[arg-type]


@dataclass
class CorruptRecord:
    """A file in the records directory that is not a valid record (half-written by a crash, edited, from
    another version). What it says about processes is kept only where well-typed; a pid counts only with its
    start time, so a damaged file can never make us kill a process it does not name exactly."""

    name: str
    path: str
    error: str
    supervisor_pid: int | None = None
    supervisor_create_time: float | None = None
    server_pid: int | None = None
    server_create_time: float | None = None
    pgid: int | None = None
    tree: list[list[float]] = field(default_factory=list)
    shm_segments: list[str] = field(default_factory=list)
    port: int | None = None
    host: str = "127.0.0.1"
    log_path: str = ""
    started_at: float = 0.0
    state: str = CORRUPT

    @classmethod
    def salvage(cls, name: str, path: Path, error: str, data: object) -> CorruptRecord:
        found = cls(name=name, path=str(path), error=error)
        if not isinstance(data, dict):
            return found
        hints = typing.get_type_hints(cls)
        for key in ("supervisor_pid", "supervisor_create_time", "server_pid", "server_create_time", "pgid",
                    "tree", "shm_segments", "port", "host", "log_path", "started_at"):
            value = data.get(key)
            if value is not None and _is_type(value, hints[key]):
                if key == "tree":
                    value = [item for item in value if len(item) == 2]
                setattr(found, key, value)
        return found


AnyRecord = Record | CorruptRecord


def records_dir() -> Path:
    return paths.state_dir() / "servers"


def logs_dir() -> Path:
    return paths.state_dir() / "logs"


def locks_dir() -> Path:
    return paths.state_dir() / "locks"


def _checked(name: str) -> str:
    if not valid_name(name):
        raise ValueError(f"not a server name: {name!r}")
    return name


def record_path(name: str) -> Path:
    return records_dir() / f"{_checked(name)}.json"


def log_path_for(name: str) -> Path:
    return logs_dir() / f"{_checked(name)}.log"


def stop_request_path(name: str) -> Path:
    """Where `down --timeout S` leaves S for the supervisor it is about to signal (its polite stop's
    budget)."""
    return locks_dir() / f"{_checked(name)}.stop"


def request_stop(name: str, timeout_s: float) -> None:
    """Tell NAME's supervisor how long its polite stop may take (read when it gets SIGTERM). Best effort:
    without it the supervisor uses its default, and `down` still kills what is left after the timeout."""
    with contextlib.suppress(OSError, ValueError):
        atomic_write_json(stop_request_path(name), {"timeout_s": float(timeout_s)})


def requested_stop_timeout(name: str, default_s: float) -> float:
    """The budget `down` asked for (then forgotten), else DEFAULT_S."""
    path = stop_request_path(name)
    try:
        value = float(json.loads(path.read_text(encoding="utf-8"))["timeout_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return default_s
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
    return value if 0 <= value <= default_s * 100 else default_s


def supervisor_log_path(name: str) -> Path:
    return logs_dir() / f"{_checked(name)}.supervisor.log"


def atomic_write_json(path: Path, data: object) -> None:
    """tmp + fsync + rename: a reader sees the old record or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write(record: Record) -> None:
    """Write RECORD atomically. Raises OSError (a full or read-only disk): callers decide whether that is
    fatal (`up` refuses before spawning) or only logged (a supervisor keeps supervising)."""
    record.updated_at = time.time()
    atomic_write_json(record_path(record.name), record.to_json())


def read_any(name: str) -> AnyRecord | None:
    """The record of server NAME, a CorruptRecord when its file is not a valid record, or None."""
    path = record_path(name)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        return CorruptRecord(name=name, path=str(path), error=f"unreadable: {exc}")
    try:
        data = json.loads(text)
    except ValueError as exc:
        return CorruptRecord(name=name, path=str(path), error=f"not valid JSON ({exc})")
    try:
        record = Record.from_json(data)
    except (ValueError, TypeError) as exc:
        return CorruptRecord.salvage(name, path, str(exc), data)
    if record.name != name:
        return CorruptRecord.salvage(name, path, f"holds server {record.name!r}, not {name!r}", data)
    return record


def read(name: str) -> Record | None:
    """The valid record of server NAME, or None (no file, or a corrupt one: see read_any)."""
    found = read_any(name)
    return found if isinstance(found, Record) else None


def delete(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        record_path(name).unlink()


def list_any() -> list[AnyRecord]:
    """Every record file, valid or corrupt, by name."""
    directory = records_dir()
    try:
        paths_found = sorted(directory.glob("*.json"))
    except OSError:
        return []
    found = []
    for path in paths_found:
        if not valid_name(path.stem):  # a stray file (`.x.json`, an editor's backup): never one of ours
            continue
        record = read_any(path.stem)
        if record is not None:
            found.append(record)
    return found


def list_records() -> list[Record]:
    """Every valid record (corrupt files are left to `list_any`)."""
    return [r for r in list_any() if isinstance(r, Record)]


@contextlib.contextmanager
def locked(name: str, timeout_s: float = 10.0) -> Iterator[None]:
    """Hold the lock of server NAME (an flock on `locks/NAME.lock`), for read-modify-write of its record."""
    with file_lock(locks_dir() / f"{name}.lock", exclusive=True, timeout_s=timeout_s):
        yield


@contextlib.contextmanager
def claiming(timeout_s: float = CLAIM_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the claims lock: every check of a name or port against the other records, and the write of the
    record that claims them, happen under it, so two `up` never both see a name or port free."""
    with file_lock(locks_dir() / "claims.lock", exclusive=True, timeout_s=timeout_s):
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
    """True when PID is alive and is the process we recorded (same start time), not a reused pid. A pid
    without a start time never matches: it could be anyone's by now."""
    if not pid or create_time is None:
        return False
    import psutil

    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(proc.create_time() - float(create_time)) < CREATE_TIME_TOLERANCE_S
    except (psutil.Error, ValueError, OverflowError, TypeError):
        return False


def supervisor_alive(record: AnyRecord) -> bool:
    return process_matches(record.supervisor_pid, record.supervisor_create_time)


def server_alive(record: AnyRecord) -> bool:
    return process_matches(record.server_pid, record.server_create_time)


def effective_state(record: AnyRecord) -> str:
    """The state to show: the recorded one, `stale` when a live-looking record lost its supervisor, or
    `corrupt` for a damaged file."""
    if isinstance(record, CorruptRecord):
        return CORRUPT
    if record.state in LIVE_STATES and not supervisor_alive(record):
        return STALE
    return str(record.state)


def holds_live_processes(record: AnyRecord) -> bool:
    """True when the supervisor or the server that RECORD names (pid and start time) still runs."""
    return supervisor_alive(record) or server_alive(record)
