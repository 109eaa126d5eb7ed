"""The detached supervisor: `python -m vllm_launcher.supervise.daemon NAME`.

Started by `up --detach` in its own session; reads the server's record (written by `up`), owns the
server until `down` (SIGTERM) or a failure, and keeps the record current. Imports only the stdlib,
psutil and the supervise package, so it stays small (no typer, pydantic, httpx or rich).
"""

from __future__ import annotations

import sys

import psutil

from vllm_launcher import records
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
    me = psutil.Process()
    record.supervisor_pid, record.supervisor_create_time = me.pid, me.create_time()
    record.mode = "detached"
    supervisor = Supervisor(record, PrintReporter())
    supervisor.report(f"supervising {name}: {' '.join(record.argv)}")
    with supervisor.handling_signals():
        code = supervisor.run(record.timeout_s)
    if record.state == records.STOPPED:
        records.delete(name)  # stopped on request: nothing left to show
    return code


if __name__ == "__main__":
    sys.exit(main())
