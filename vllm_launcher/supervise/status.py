"""What `status` shows of a server: its state (stale, corrupt), processes, memory and vLLM's metrics."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import psutil

from vllm_launcher.base.inputs import check_server_name
from vllm_launcher.machine import records
from vllm_launcher.machine.records import AnyRecord, CorruptRecord
from vllm_launcher.supervise import procs, readiness


def status_entry(record: AnyRecord, with_metrics: bool = True) -> dict[str, Any]:
    """One server as `status` shows it (and `--json` prints it); a damaged record as state `corrupt`."""
    if isinstance(record, CorruptRecord):
        server_up = records.server_alive(record)
        return {"name": record.name, "state": records.CORRUPT,
                "pid": record.server_pid if server_up else None, "port": record.port,
                "model": None, "endpoint": None, "base_url": None, "preset": None,
                "supervisor_pid": record.supervisor_pid, "mode": None, "restarts": 0,
                "reason": f"damaged record {record.path}: {record.error}", "path": record.path,
                "uptime_s": None, "started_at": record.started_at, "memory_bytes": 0, "processes": 0,
                "log": record.log_path or None, "running": None, "waiting": None, "kv_cache_usage": None}
    current = records.effective_state(record)
    server_up = records.server_alive(record)
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
        "uptime_s": round(now - record.ready_at, 1) if record.ready_at and current == records.READY else None,
        "started_at": record.started_at, "memory_bytes": rss, "processes": len(live), "log": record.log_path,
        "running": None, "waiting": None, "kv_cache_usage": None,
        "kind": record.kind, "managed_by": record.managed_by or None,
    }
    if record.diagnosis:
        entry["diagnosis"] = record.diagnosis
    serving = server_up and current in (records.READY, records.UNHEALTHY)
    if with_metrics and record.kind == "server" and serving:
        entry.update(readiness.metrics(record.host, record.port, timeout_s=0.5))
    return entry


def _children(pid: int | None) -> list[int]:
    if not pid:
        return []
    with contextlib.suppress(psutil.Error):
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    return []


def status_entries(name: str | None = None) -> list[dict[str, Any]]:
    """Every server (valid or damaged record), or only NAME (ConfigError naming the known ones if none)."""
    if name is not None:
        check_server_name("NAME", name)
    found = records.list_any()
    if name is not None:
        found = [r for r in found if r.name == name]
        if not found:
            from vllm_launcher.supervise.claim import unknown_server

            raise unknown_server(name)
    return [status_entry(r) for r in found]
