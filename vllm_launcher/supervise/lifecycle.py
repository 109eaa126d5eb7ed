"""The vocabulary of a supervised server's life, shared by the supervisor and what listens to it: the
restart policy, how one start or one watch ended (`Outcome`), who hears about it (`Reporter`), and the
environment and GPU locks of a start.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from vllm_launcher.machine.records import Record
from vllm_launcher.supervise import diagnose


@dataclass
class RestartPolicy:
    """supervisord/systemd vocabulary: when to restart, back-off, and when to give up."""

    mode: str = "on-failure"  # on-failure | always | never
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    max_restarts: int = 5  # ... within window_s, then give up (state failed)
    window_s: float = 300.0
    unhealthy_after: int = 3  # consecutive failed /health checks
    reset_after_s: float = 60.0  # healthy this long: the back-off starts over

    def delay_s(self, attempt: int) -> float:
        """Back-off before restart number ATTEMPT (0-based): first_delay, doubling, capped."""
        return min(self.max_delay_s, self.first_delay_s * (2 ** attempt))


@dataclass
class Outcome:
    kind: str  # ready | exited | timeout | stopped | conflict (the port answers for another process)
    returncode: int | None = None
    reason: str = ""
    diagnosis: diagnose.Diagnosis | None = None
    tail: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Reporter:
    """What the supervisor tells its user. The base class is silent (detached mode logs events only)."""

    follows_log = False  # True: `line()` also gets the log while serving (foreground echo)

    def line(self, text: str) -> None:
        """A new line of the server's log."""

    def tick(self, elapsed_s: float, eta_s: float | None, phase: str | None, last_line: str,
             memory_bytes: int | None = None) -> None:
        """About four times a second while starting (MEMORY_BYTES: the tree's RSS, when known)."""

    def phase(self, name: str) -> None:
        """The start-up entered phase NAME."""

    def event(self, text: str) -> None:
        """A state change worth a line: ready, restarting, failed, stopped."""

    def ready(self, record: Record, seconds: float) -> None:
        """The server is ready."""

    def failed(self, record: Record, outcome: Outcome) -> None:
        """The server failed for good."""


class PrintReporter(Reporter):
    """Events as timestamped lines on stdout (the detached supervisor's own log)."""

    def event(self, text: str) -> None:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}", flush=True)

    def ready(self, record: Record, seconds: float) -> None:
        self.event(f"ready after {seconds:.1f} s at {record.base_url}")

    def failed(self, record: Record, outcome: Outcome) -> None:
        self.event(f"failed: {record.reason}")


def spawn_env(record: Record, base: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: the user's, the preset's env on top, secrets resolved from the user's
    variables (by name, never stored)."""
    env = dict(os.environ if base is None else base)
    env.update(record.env)
    for target, source in record.secret_env.items():
        if source in env:
            env[target] = env[source]
    env.setdefault("PYTHONUNBUFFERED", "1")  # log lines arrive as they are written
    return env


def gpu_lock_plan(record: Record) -> list[tuple[str, bool]]:
    """(lock name, exclusive) for a start on the GPU: vLLM measures free memory while it starts, so
    starts that share a GPU go one at a time. Unpinned starts (no --gpus) may use any GPU: they take
    the global lock exclusively; pinned starts share it and take their GPUs' locks exclusively."""
    if record.device != "cuda":
        return []
    if not record.gpus:
        return [("gpu-all", True)]
    return [("gpu-all", False)] + [(f"gpu-{gpu}", True) for gpu in sorted(record.gpus)]
