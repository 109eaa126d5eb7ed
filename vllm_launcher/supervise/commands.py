"""Bodies of `up`, `status`, `logs` and `down` (no typer here, so a fast path can call them directly).

Each returns the exit code; errors are raised as ConfigError (2) or LaunchError (1).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from vllm_launcher import output
from vllm_launcher.errors import ConfigError, LaunchError
from vllm_launcher.inputs import (
    MAX_LOG_LINES,
    MAX_START_TIMEOUT_S,
    MAX_STOP_TIMEOUT_S,
    check_number,
    check_server_name,
)
from vllm_launcher.supervise import launch, readiness, state


def up_main(preset_ref: str, overrides: list | None = None, name: str | None = None, detach: bool = False,
            timeout_s: float | None = None, restart: str = "on-failure", gpus: str | None = None,
            force: bool = False, dry_run: bool = False, hardware_file: str | None = None) -> int:
    from vllm_launcher.plan import build_plan, format_shell
    from vllm_launcher.presets import resolve
    from vllm_launcher.supervise.display import TerminalReporter, failure_text, ready_text

    check_number("--timeout", timeout_s, low=0, high=MAX_START_TIMEOUT_S, low_inclusive=False)
    if name is not None:
        check_server_name("--name", name)
    resolved = resolve(preset_ref, overrides)
    record = launch.make_record(resolved, name=name, gpus=gpus, restart=restart, timeout_s=timeout_s,
                                detach=detach)
    if not dry_run:
        launch.check_host(record.host)  # exit 2 even with --force: vLLM could never bind it
        launch.check_name_free(record.name)
        unwritable = launch.state_dirs_problem()  # before anything is spawned, even with --force
        if unwritable:
            raise LaunchError(f"not starting {record.name}: {unwritable}")
    checked = launch.preflight_all(resolved, record, hardware_file)
    problems = checked.problems
    if dry_run:
        output.out(format_shell(build_plan(resolved.preset)))
        output.out(f"# server {record.name}: {record.endpoint}, log {record.log_path}")
        for warning in checked.warnings:
            output.out(f"# warning: {warning}")
        output.out("# pre-flight: " + ("ok" if not problems else "would refuse:"))
        for problem in problems:
            output.out(f"#   - {problem}")
        return 0 if not problems else 1
    if problems and not force:
        reasons = "; ".join(problems)
        raise LaunchError(f"not starting {record.name}: {reasons} (--force starts it anyway)")
    for warning in checked.warnings:
        output.err(f"vllm-launch: warning: {warning}")
    for problem in problems:
        output.err(f"vllm-launch: warning: {problem} (starting anyway: --force)")
    launch.ensure_demo(resolved.preset)
    launch.claim(record)
    if not detach:
        reporter = TerminalReporter(record.name, echo=True)
        reporter.event(f"starting {record.preset} on {record.endpoint} (log: {record.log_path})")
        return launch.run_foreground(record, reporter)
    reporter = TerminalReporter(record.name, echo=False)
    daemon = launch.start_detached(record)
    try:
        result = launch.wait_detached(record.name, daemon, reporter)
    except KeyboardInterrupt:
        reporter.done()
        current = state.read(record.name)
        if current is not None:
            launch.cleanup(current)
        output.err(f"vllm-launch: {record.name}: interrupted, stopped")
        return 130
    reporter.done()
    if result.ok:
        output.out(ready_text(result.record, result.seconds))
        return 0
    output.err(failure_text(result.record, result.tail, result.record.diagnosis, result.record.reason))
    return 1


def _fmt_bytes(value: int | None) -> str:
    if not value:
        return "-"
    return f"{value / 1024**3:.1f}G" if value >= 1024**3 else f"{value / 1024**2:.0f}M"


def _fmt_uptime(value: float | None) -> str:
    from vllm_launcher.supervise.display import fmt_s

    return fmt_s(value) if value is not None else "-"


def status_table(entries: list[dict]) -> str:
    rows = []
    for e in entries:
        kv = f"{e['kv_cache_usage'] * 100:.0f}%" if e.get("kv_cache_usage") is not None else "-"
        reqs = (f"{e['running']:.0f}/{e['waiting']:.0f}" if e.get("running") is not None
                and e.get("waiting") is not None else "-")
        rows.append([e["name"], e["model"] or "-", e["endpoint"] or "-", e["state"], e["pid"] or "-",
                     _fmt_uptime(e["uptime_s"]),
                     e["restarts"], _fmt_bytes(e["memory_bytes"]), reqs, kv])
    text = output.table(["NAME", "MODEL", "ENDPOINT", "STATE", "PID", "UPTIME", "RESTARTS", "MEMORY",
                         "RUN/WAIT", "KV"], rows)
    notes = []
    for e in entries:
        if e["state"] == state.CORRUPT:
            notes.append(f"{e['name']}: {e['reason']}; `vllm-launch down {e['name']}` removes it (and stops what "
                         "it names, if that still runs as recorded)")
        elif e["state"] == state.STALE:
            notes.append(f"{e['name']}: its supervisor is gone; `vllm-launch down {e['name']}` cleans up")
        elif e["state"] in (state.FAILED, state.BACKOFF, state.UNHEALTHY) and e.get("reason"):
            notes.append(f"{e['name']}: {e['reason']}")
            if e.get("diagnosis"):
                notes.append(f"  cause: {e['diagnosis'].get('cause', '')}")
                notes.append(f"  fix:   {e['diagnosis'].get('fix', '')}")
    return "\n".join([text, *notes])


def status_main(name: str | None = None, as_json: bool = False, watch: bool = False,
                interval_s: float = 2.0) -> int:
    while True:
        entries = launch.status_entries(name)
        if as_json:
            output.print_json(entries)
        elif not entries:
            output.out("no servers (start one with `vllm-launch up PRESET`)")
        else:
            if watch and sys.stdout.isatty():
                sys.stdout.write("\033[H\033[J")  # redraw in place
            output.out(status_table(entries))
        if not watch:
            return 0
        try:
            time.sleep(interval_s)
        except KeyboardInterrupt:
            return 0


def logs_main(name: str, follow: bool = False, lines: int = 50) -> int:
    if lines < 0:
        raise ConfigError(f"-n/--lines takes a number of lines, 0 or more, not {lines}")
    check_number("-n/--lines", lines, low=0, high=MAX_LOG_LINES)
    check_server_name("NAME", name)
    record = state.read_any(name)
    path = Path(record.log_path) if record is not None and record.log_path else state.log_path_for(name)
    if record is None and not path.exists():
        raise launch.unknown_server(name)
    for line in readiness.tail_lines(path, lines):
        output.out(line)
    if not follow:
        return 0
    follower = readiness.LogFollower(path, from_end=True)
    try:
        while True:
            for line in follower.read_lines():
                output.out(line)
            sys.stdout.flush()
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0


def down_main(name: str | None = None, all_servers: bool = False, timeout_s: float = 30.0) -> int:
    if (name is None) == (not all_servers):
        raise ConfigError("give a server NAME or --all (not both)")
    check_number("--timeout", timeout_s, low=0, high=MAX_STOP_TIMEOUT_S)
    if all_servers:
        records = state.list_any()
    else:
        record = state.read_any(check_server_name("NAME", name or ""))
        if record is None:
            raise launch.unknown_server(name or "")
        records = [record]
    if not records:
        output.out("no servers to stop")
        return 0
    failed = False
    for record in records:
        result = launch.cleanup(record, timeout_s)
        how = ", ".join(result.signals) or "already stopped"
        shm = f", removed {len(result.shm_removed)} /dev/shm segment(s)" if result.shm_removed else ""
        if result.survivors:
            failed = True
            output.error_line(f"{record.name}: processes survived: {result.survivors}")
        elif not result.port_free:
            failed = True
            holder = f" (held by {result.port_holder})" if result.port_holder else ""
            output.error_line(f"{record.name}: stopped, but port {record.port} is still in use{holder}")
        elif isinstance(record, state.CorruptRecord):
            output.out(f"removed the damaged record of {record.name} ({how}{shm})")
        else:
            output.out(f"stopped {record.name} ({how}; {result.seconds:.1f} s{shm}); port {record.port} is free")
    return 1 if failed else 0
