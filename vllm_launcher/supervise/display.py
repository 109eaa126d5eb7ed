"""What a person sees while a server starts: a live status line on a terminal (elapsed, ETA, phase, last
log line) with the log echoed above it, or plain phase lines when stderr is not a terminal. Plain ANSI:
no rich import on this path.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from typing import TextIO

from vllm_launcher.supervise.state import Record
from vllm_launcher.supervise.supervisor import Outcome, Reporter

SPINNER = "|/-\\"
# The supervisor's own probes in vLLM's access log: not worth echoing.
QUIET_ACCESS = re.compile(r'"GET /(health|metrics|v1/models)[ "]')
CLEAR_LINE = "\r\033[K"


def fmt_s(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def client_snippet(record: Record) -> str:
    """The guide's client config (`profiles.yaml`): CPU answers slowly, so a longer timeout."""
    timeout_s = 300 if record.device == "cpu" else 120
    note = "  # longer timeout for CPU" if record.device == "cpu" else ""
    return f"vllm:\n  base_url: {record.base_url}\n  timeout: {timeout_s}{note}"


def ready_text(record: Record, seconds: float | None) -> str:
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    lines = [
        f"{record.name} is ready{took}",
        f"  endpoint:      {record.endpoint}",
        f"  served model:  {record.served_model}",
        f"  OpenAI base:   {record.base_url}",
        f"  log:           {record.log_path}",
        "profiles.yaml entry for the client:",
        *("  " + line for line in client_snippet(record).splitlines()),
    ]
    if record.mode == "detached":
        lines.append(f"stop it with: vllm-launch down {record.name}")
    return "\n".join(lines)


def failure_text(record: Record, tail: list[str], diagnosis: dict[str, str] | None, reason: str) -> str:
    lines = [f"{record.name} failed: {reason}"]
    if tail:
        lines.append(f"last lines of {record.log_path}:")
        lines += ["  | " + line[:300] for line in tail[-20:]]
    if diagnosis:
        lines.append(f"cause: {diagnosis.get('cause', '')}")
        lines.append(f"fix:   {diagnosis.get('fix', '')}")
    return "\n".join(lines)


class TerminalReporter(Reporter):
    """Progress on stderr; the server's log echoed on stdout when ECHO (foreground `up`)."""

    def __init__(self, name: str, echo: bool, stderr: TextIO | None = None, stdout: TextIO | None = None) -> None:
        self.name = name
        self.echo = echo
        self.follows_log = echo
        self.err = stderr or sys.stderr
        self.out = stdout or sys.stdout
        self.tty = self.err.isatty()
        self.status_shown = False
        self.started = time.monotonic()
        self.spin = 0

    def _clear(self) -> None:
        if self.status_shown:
            self.err.write(CLEAR_LINE)
            self.err.flush()
            self.status_shown = False

    def line(self, text: str) -> None:
        if not self.echo or QUIET_ACCESS.search(text):
            return
        self._clear()
        self.out.write(text + "\n")
        self.out.flush()

    def tick(self, elapsed_s: float, eta_s: float | None, phase: str | None, last_line: str) -> None:
        if not self.tty:
            return
        self.spin += 1
        eta = f" / ~{fmt_s(eta_s)}" if eta_s else ""
        head = f"{SPINNER[self.spin % 4]} {self.name}: starting {fmt_s(elapsed_s)}{eta} · {phase or 'launching'}"
        width = shutil.get_terminal_size((100, 20)).columns - 1
        tail = "" if self.echo else f" · {last_line.strip()}"
        self.err.write(CLEAR_LINE + (head + tail)[:width])
        self.err.flush()
        self.status_shown = True

    def phase(self, name: str) -> None:
        if not self.tty:
            self.err.write(f"vllm-launch: {self.name}: {name} ({fmt_s(time.monotonic() - self.started)})\n")
            self.err.flush()

    def event(self, text: str) -> None:
        self._clear()
        self.err.write(f"vllm-launch: {self.name}: {text}\n")
        self.err.flush()

    def ready(self, record: Record, seconds: float) -> None:
        self._clear()
        self.out.write(ready_text(record, seconds) + "\n")
        self.out.flush()

    def failed(self, record: Record, outcome: Outcome) -> None:
        self._clear()
        diagnosis = outcome.diagnosis.as_dict() if outcome.diagnosis else None
        self.err.write(failure_text(record, outcome.tail, diagnosis, record.reason) + "\n")
        self.err.flush()

    def done(self) -> None:
        self._clear()
