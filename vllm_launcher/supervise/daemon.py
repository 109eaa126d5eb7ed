"""The detached supervisor: `python -m vllm_launcher.supervise.daemon NAME`.

Started by `up --detach` in its own session; reads the server's record (written by `up`), owns the
server until `down` (SIGTERM) or a failure, and keeps the record current. Imports only the stdlib,
psutil and the supervise package, so it stays small (no typer, pydantic, httpx or rich).
"""

from __future__ import annotations

import sys

import psutil

from vllm_launcher.machine import records
from vllm_launcher.machine.records import Record
from vllm_launcher.supervise.lifecycle import PrintReporter
from vllm_launcher.supervise.supervisor import Supervisor


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m vllm_launcher.supervise.daemon NAME", file=sys.stderr)
        return 2
    name = args[0]
    record = records.read(name)
    if record is None:
        print(f"no record for server {name}", file=sys.stderr)
        return 1
    supervisor = Supervisor(record, PrintReporter())
    with supervisor.handling_signals():  # from here a SIGTERM from `up` or `down` is a stop request
        problem = take_over(record)
        if problem:
            print(f"not supervising {name}: {problem}", file=sys.stderr)
            return 1
        supervisor.report(f"supervising {name}: {' '.join(record.argv)}")
        code = supervisor.run(record.timeout_s)
    if record.state == records.STOPPED:
        try:
            records.delete(name)  # stopped on request: nothing left to show
        except OSError as exc:  # `down` says so too; the server is stopped all the same
            print(f"cannot remove the record of {name}: {exc.strerror or exc}", file=sys.stderr)
    return code


def take_over(record: Record) -> str | None:
    """Become the supervisor of RECORD, as read at start: under its lock, only while the claim written by
    `up` still stands (the record is there, starting, and names the `up` that claimed it, alive). Else why
    not: `down` stopped that `up` (or it died) and the start must not happen behind its back."""
    claimer = (record.supervisor_pid, record.supervisor_create_time)
    me = psutil.Process()
    try:
        with records.locked(record.name):
            current = records.read(record.name)
            if current is None:
                return "its record is gone (stopped before the start)"
            if (current.supervisor_pid, current.supervisor_create_time) != claimer:
                return f"its record names another supervisor (pid {current.supervisor_pid})"
            if current.state != records.State.STARTING or not records.supervisor_alive(current):
                return "the `up` that claimed it has exited (stopped before the start)"
            record.supervisor_pid, record.supervisor_create_time = me.pid, me.create_time()
            record.mode = "detached"
            records.write(record)
    except (OSError, TimeoutError) as exc:
        return f"cannot write its record ({exc})"
    return None


if __name__ == "__main__":
    sys.exit(main())
