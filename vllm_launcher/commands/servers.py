"""`up`, `status`, `logs`, `down`: start a server and keep it, look at it, stop it.

`up` in the foreground supervises in this process; `up --detach` leaves a background supervisor
(supervise.detach). Errors are raised as ConfigError (exit 2) or LaunchError (exit 1).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vllm_launcher.base import output
from vllm_launcher.base.errors import ConfigError, LaunchError
from vllm_launcher.base.inputs import (
    MAX_LOG_LINES,
    MAX_START_TIMEOUT_S,
    MAX_STOP_TIMEOUT_S,
    check_number,
    check_server_name,
)
from vllm_launcher.base.output import Result
from vllm_launcher.base.units import GIB, MIB
from vllm_launcher.machine import records

if TYPE_CHECKING:
    from vllm_launcher.clients.agent_profile import ProfileWrite


def up(preset: str, name: str | None = None, detach: bool = False, timeout_s: float | None = None,
       restart: str = "on-failure", gpus: str | None = None, force: bool = False, dry_run: bool = False,
       hardware_file: str | None = None, verbose: bool = False, client_config: str | None = None,
       overrides: list | None = None) -> Result:
    """Pre-flight (doctor's findings), claim the name and port, then supervise here or in the background."""
    from vllm_launcher.base.safe_text import printable
    from vllm_launcher.preset.plan import build_plan, format_shell
    from vllm_launcher.preset.schema import resolve
    from vllm_launcher.supervise import claim, preflight
    from vllm_launcher.supervise import detach as detaching

    check_number("--timeout", timeout_s, low=0, high=MAX_START_TIMEOUT_S, low_inclusive=False)
    if name is not None:
        check_server_name("--name", name)
    resolved = resolve(preset, overrides)
    record = claim.make_record(resolved, name=name, gpus=gpus, restart=restart, timeout_s=timeout_s,
                               detach=detach)
    profile = _prepare_profile(client_config, record)
    if not dry_run:
        claim.check_name_free(record.name)
        unwritable = preflight.state_dirs_problem()  # before anything is spawned, even with --force
        if unwritable:
            raise LaunchError(f"not starting {record.name}: {unwritable}")
    checked = preflight.preflight(resolved.preset, hardware_file)
    if dry_run:
        lines = [format_shell(build_plan(resolved.preset)), f"# server {record.name}: {record.endpoint}, log "
                 f"{record.log_path}"]
        lines += [f"# warning: {warning}" for warning in checked.warnings]
        lines.append("# pre-flight: " + ("ok" if not checked.problems else "would refuse:"))
        lines += [f"#   - {problem}" for problem in checked.problems]
        if profile is not None:
            lines.append(f"# client profile: would write {printable(str(profile.target))}")  # one line
        return Result(text="\n".join(lines), code=0 if not checked.problems else 1)
    if checked.usage:
        raise ConfigError(checked.usage[0])  # vLLM could never bind it: exit 2 even with --force
    if checked.problems and not force:
        raise LaunchError(f"not starting {record.name}: {'; '.join(checked.problems)} "
                          "(--force starts it anyway)")
    for warning in checked.warnings:
        output.err(f"vllm-launch: warning: {warning}")
    for problem in checked.problems:
        output.err(f"vllm-launch: warning: {problem} (starting anyway: --force)")
    preflight.ensure_demo(resolved.preset)
    if profile is not None:  # as the start begins, so the agent can be pointed at it while vLLM loads;
        from vllm_launcher.clients.agent_profile import write_profile

        write_profile(profile)  # and before the claim: a failed write leaves no record behind
    if not detach:
        claim.claim(record)
        return Result(code=detaching.run_foreground(record, verbose=verbose))
    with detaching.stop_signals_interrupt():  # from the claim on, `down` may signal this process
        claim.claim(record)
        return detaching.run_detached(record)


def _prepare_profile(client_config: str | None, record: records.Record) -> ProfileWrite | None:
    """--client-config: read and checked before anything starts (a file we could not rewrite stops us)."""
    if client_config is None:
        return None
    from vllm_launcher.clients.agent_profile import prepare_profile, profile_entry

    return prepare_profile(client_config, profile_entry(record.base_url, record.device))


# ------------------------------------------------------------------------------------------- status


def _fmt_bytes(value: int | None) -> str:
    if not value:
        return "-"
    return f"{value / GIB:.1f}G" if value >= GIB else f"{value / MIB:.0f}M"


def _fmt_uptime(value: float | None) -> str:
    from vllm_launcher.supervise.display import fmt_s

    return fmt_s(value) if value is not None else "-"


def status_table(entries: list[dict[str, Any]]) -> str:
    rows = []
    for e in entries:
        kv = f"{e['kv_cache_usage'] * 100:.0f}%" if e.get("kv_cache_usage") is not None else "-"
        reqs = (f"{e['running']:.0f}/{e['waiting']:.0f}" if e.get("running") is not None
                and e.get("waiting") is not None else "-")
        model = e["model"] or "-"
        if e.get("kind") == "gateway":
            model = f"gateway for {model}"
        elif e.get("managed_by"):
            model = f"{model} (via {e['managed_by']})"
        rows.append([e["name"], model, e["endpoint"] or "-", e["state"], e["pid"] or "-",
                     _fmt_uptime(e["uptime_s"]), e["restarts"], _fmt_bytes(e["memory_bytes"]), reqs, kv])
    text = output.table(["NAME", "MODEL", "ENDPOINT", "STATE", "PID", "UPTIME", "RESTARTS", "MEMORY",
                         "RUN/WAIT", "KV"], rows)
    notes = []
    for e in entries:
        if e["state"] == records.CORRUPT:
            notes.append(f"{e['name']}: {e['reason']}; `vllm-launch down {e['name']}` removes it (and stops "
                         "what it names, if that still runs as recorded)")
        elif e["state"] == records.STALE:
            notes.append(f"{e['name']}: its supervisor is gone; `vllm-launch down {e['name']}` cleans up")
        elif e["state"] in (records.FAILED, records.BACKOFF, records.UNHEALTHY) and e.get("reason"):
            notes.append(f"{e['name']}: {e['reason']}")
            if e.get("diagnosis"):
                notes.append(f"  cause: {e['diagnosis'].get('cause', '')}")
                notes.append(f"  fix:   {e['diagnosis'].get('fix', '')}")
    return "\n".join([text, *notes])


def status_result(name: str | None = None, as_json: bool = False) -> Result:
    from vllm_launcher.supervise.status import status_entries

    entries = status_entries(name)
    text = status_table(entries) if entries else "no servers (start one with `vllm-launch up PRESET`)"
    return Result(text=text, data=entries, as_json=as_json)


WATCH_INTERVAL_S = 2.0


def status(name: str | None = None, as_json: bool = False, watch: bool = False) -> Result:
    """The servers now; with WATCH, redrawn every WATCH_INTERVAL_S until Ctrl-C."""
    if not watch:
        return status_result(name, as_json)
    while True:
        result = status_result(name, as_json)
        if not as_json and sys.stdout.isatty():
            sys.stdout.write("\033[H\033[J")  # redraw in place
        output.emit(result)
        try:
            time.sleep(WATCH_INTERVAL_S)
        except KeyboardInterrupt:
            return Result()


# --------------------------------------------------------------------------------------------- logs


def logs(name: str, follow: bool = False, lines: int = 50) -> Result:
    """The last LINES lines of a server's vLLM log; with FOLLOW, new lines until Ctrl-C."""
    from vllm_launcher.base.safe_text import printable
    from vllm_launcher.supervise import readiness
    from vllm_launcher.supervise.claim import unknown_server

    if lines < 0:
        raise ConfigError(f"-n/--lines takes a number of lines, 0 or more, not {lines}")
    check_number("-n/--lines", lines, low=0, high=MAX_LOG_LINES)
    check_server_name("NAME", name)
    record = records.read_any(name)
    own = records.log_path_for(name)
    path = Path(record.log_path) if isinstance(record, records.Record) and record.log_path else own
    if record is None and not path.exists():
        raise unknown_server(name)
    if not _inside(path, records.logs_dir()):
        # A record names its log, and a forged or damaged one could name any file: only ours are read.
        raise LaunchError(f"the record of {name} names a log outside {records.logs_dir()} "
                          f"({printable(str(path))}): not read (a gateway's own --log-file: read it there)")
    damaged = None
    if isinstance(record, records.CorruptRecord):
        # Its own log, if any, never the path a damaged record names; and the command says so.
        damaged = (f"the record of {name} is damaged ({printable(record.error)}): showing {own} only, "
                   f"never a log it names; `vllm-launch down {name}` removes it")
    for line in readiness.tail_lines(path, lines):
        output.out(line)
    if damaged:
        return Result(errors=[damaged], code=1)
    if not follow:
        return Result()
    follower = readiness.LogFollower(path, from_end=True)
    try:
        while True:
            for line in follower.read_lines():
                output.out(line)
            sys.stdout.flush()
            time.sleep(0.2)
    except KeyboardInterrupt:
        return Result()


def _inside(path: Path, directory: Path) -> bool:
    """PATH, links followed, is a file inside DIRECTORY (also links followed)."""
    import os

    real = os.path.realpath(path)
    return os.path.commonpath([real, os.path.realpath(directory)]) == os.path.realpath(directory) \
        and real != os.path.realpath(directory)


# --------------------------------------------------------------------------------------------- down


def _servers_of_gateways(targets: list[records.AnyRecord]) -> list[records.AnyRecord]:
    """The servers a gateway among TARGETS started and left behind (a gateway stops its own when it is asked
    to; these are what remains when it could not, e.g. after it was killed)."""
    gateways = {r.name for r in targets if isinstance(r, records.Record) and r.kind == "gateway"}
    return [r for r in records.list_records() if r.managed_by in gateways]


def _gateway_label(name: str | None) -> str:
    """The default gateway is named "gateway": "the gateway", not "gateway gateway"."""
    return "the gateway" if name in (None, "gateway") else f"gateway {name}"


def _stop_one(record: records.AnyRecord, gateway: bool, timeout_s: float, lines: list[str],
              errors: list[str]) -> None:
    from vllm_launcher.supervise.stop import cleanup

    result = cleanup(record, timeout_s)
    how = ", ".join(result.signals) or "already stopped"
    shm = f", removed {len(result.shm_removed)} /dev/shm segment(s)" if result.shm_removed else ""
    # A record that could not be removed (read-only directory) is said in the same one line.
    left = (f", but {result.record_error} (`vllm-launch down {record.name}` again once it is writable)"
            if result.record_error else "")
    if result.survivors:
        errors.append(f"{record.name}: processes survived: {result.survivors}{left}")
    elif not result.port_free:
        holder = f" (held by {result.port_holder})" if result.port_holder else ""
        errors.append(f"{record.name}: stopped, but port {record.port} is still in use{holder}{left}")
    elif isinstance(record, records.CorruptRecord):
        done = f"stopped what the damaged record of {record.name} names ({how}{shm})" if left else \
            f"removed the damaged record of {record.name} ({how}{shm})"
        (errors if left else lines).append(done + left)
    else:
        what = _gateway_label(record.name) if gateway else record.name
        done = f"stopped {what} ({how}; {result.seconds:.1f} s{shm}); port {record.port} is free"
        (errors if left else lines).append(done + left)


def down(name: str | None = None, all_servers: bool = False, timeout_s: float = 30.0) -> Result:
    """Stop a server (or all) and its whole tree; confirm that nothing is left and the port is free."""
    from vllm_launcher.supervise.claim import unknown_server

    if (name is None) == (not all_servers):
        raise ConfigError("give a server NAME or --all (not both)")
    check_number("--timeout", timeout_s, low=0, high=MAX_STOP_TIMEOUT_S)
    if all_servers:
        targets = records.list_any()
    else:
        record = records.read_any(check_server_name("NAME", name or ""))
        if record is None:
            raise unknown_server(name or "")
        targets = [record]
    if not targets:
        return Result(text="no servers to stop")
    lines: list[str] = []
    errors: list[str] = []
    # A gateway first (it stops the servers it started), then the servers named, then what a gateway that
    # could not stop its servers (killed) left behind.
    gateways: list[records.AnyRecord] = [r for r in targets
                                         if isinstance(r, records.Record) and r.kind == "gateway"]
    named = [r for r in targets if r not in gateways]
    left = [r for r in _servers_of_gateways(gateways) if r.name not in {n.name for n in named}]
    for record in [*gateways, *named, *left]:
        if record not in gateways and records.read_any(record.name) is None:
            if isinstance(record, records.Record) and record.managed_by:
                lines.append(f"stopped {record.name} (by {_gateway_label(record.managed_by)})")
            continue
        _stop_one(record, record in gateways, timeout_s, lines, errors)
    return Result(text="\n".join(lines) if lines else None, errors=errors, code=1 if errors else 0)
