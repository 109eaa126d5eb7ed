"""A server's name and port: the record of a server about to start, and claiming both under one lock.

Of two `up` with one name, or two names on one port, exactly one gets the claim; the other is refused
(exit 2) naming the holder. A stale, finished or dead damaged record of the same name is cleaned up first.
"""

from __future__ import annotations

import time
from typing import Any

import psutil

from vllm_launcher.base.errors import ConfigError, LaunchError
from vllm_launcher.base.inputs import RESTART_MODES, check_server_name
from vllm_launcher.machine import records
from vllm_launcher.machine.records import AnyRecord, CorruptRecord, Record


def make_record(resolved: Any, name: str | None = None, gpus: str | None = None,
                restart: str = "on-failure", timeout_s: float | None = None, detach: bool = False) -> Record:
    """A resolved preset → the record of a server about to start (argv and env from plan.build_plan)."""
    from vllm_launcher.preset.plan import build_plan

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
        gpus=gpu_ids, restart_policy=restart, timeout_s=timeout_s,
        mode="detached" if detach else "foreground",
        log_path=str(records.log_path_for(server_name)), created_at=time.time(),
    )


def _holder(record: AnyRecord) -> str:
    if isinstance(record, CorruptRecord):
        return f"the damaged record {record.path}"
    pid = f", supervisor pid {record.supervisor_pid}" if record.supervisor_pid else ""
    return f"server {record.name} ({records.effective_state(record)} on port {record.port}{pid})"


def name_taken(name: str, existing: AnyRecord | None) -> ConfigError | None:
    """Why NAME cannot be claimed now (a live server has it, or a damaged record of it names processes
    that still run), else None."""
    if existing is None:
        return None
    current = records.effective_state(existing)
    if current in records.LIVE_STATES:
        return ConfigError(f"a server named {name} is already {current}: {_holder(existing)} "
                           f"(`vllm-launch down {name}` first, or choose --name)")
    if isinstance(existing, CorruptRecord) and records.holds_live_processes(existing):
        return ConfigError(f"the record of server {name} is damaged ({existing.error}) and names processes "
                           f"that still run: `vllm-launch down {name}` stops them")
    return None


def check_name_free(name: str) -> None:
    """An early, cheap refusal (before the pre-flight); `claim` checks again under the claims lock."""
    problem = name_taken(name, records.read_any(name))
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
        with records.claiming():
            existing = records.read_any(record.name)
            problem = name_taken(record.name, existing)
            if problem:
                raise problem
            for other in records.list_any():
                if other.name == record.name or other.port != record.port:
                    continue
                if (records.effective_state(other) in records.LIVE_STATES
                        or records.holds_live_processes(other)):
                    raise ConfigError(f"port {record.port} is already claimed by {_holder(other)}: pick "
                                      f"another --port, or `vllm-launch down {other.name}`")
            if existing is not None:
                from vllm_launcher.supervise.stop import cleanup

                cleanup(existing, timeout_s=10.0)
            record.state = records.State.STARTING.value
            record.supervisor_pid, record.supervisor_create_time = me.pid, me.create_time()
            records.write(record)
    except TimeoutError:
        raise LaunchError("another vllm-launch has held the server records' lock for over "
                          f"{records.CLAIM_LOCK_TIMEOUT_S:g} s; try again") from None
    except OSError as exc:
        raise LaunchError(f"cannot write the record of {record.name}: {exc.strerror or exc}") from None


def unknown_server(name: str) -> ConfigError:
    """`status/logs/down NAME` with no such server: a usage error naming the known ones."""
    import difflib

    check_server_name("NAME", name)
    known = sorted(r.name for r in records.list_any())
    if not known:
        return ConfigError(f"no server named {name}: no servers are known "
                           "(start one with `vllm-launch up PRESET`)")
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return ConfigError(f"no server named {name}{hint}; known: {', '.join(known)}")
