"""Before spawning: can the records and logs be written, and does doctor see a reason the launch is doomed?

`up`'s pre-flight is doctor's pre-flight findings (doctor.preflight.preflight_findings: static, memory, port,
host, vLLM installed, secrets) plus the one check only a launch needs: the state directory must be
writable.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from vllm_launcher.base.errors import ConfigError
from vllm_launcher.machine import records

# Below this much free space in the state directory, `up` refuses: vLLM's start-up log alone is ~100 KB
# and the records are rewritten on every state change.
MIN_FREE_BYTES = 8 << 20


def state_dirs_problem() -> str | None:
    """Why the records, logs and locks could not be written now (read-only, full, not a directory), else
    None. Tried for real: a small file is written, synced and removed in each directory."""
    for directory in (records.records_dir(), records.logs_dir(), records.locks_dir()):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            stats = os.statvfs(directory)
            free = stats.f_bavail * stats.f_frsize
            if free < MIN_FREE_BYTES:
                return (f"{directory} has only {free / 1024:.0f} KiB free; vllm-launch needs "
                        f"{MIN_FREE_BYTES >> 20} MiB for the server's log and record (free some space, or "
                        "set XDG_STATE_HOME)")
            probe = directory / f".write-test-{os.getpid()}"
            try:
                with open(probe, "wb") as handle:
                    handle.write(b"\0" * 4096)
                    handle.flush()
                    os.fsync(handle.fileno())
            finally:
                probe.unlink(missing_ok=True)
        except OSError as exc:
            return (f"cannot write in {directory}: {exc.strerror or exc} (vllm-launch keeps the server's "
                    "record and log there; fix the directory or set XDG_STATE_HOME)")
    return None


@dataclass
class Preflight:
    problems: list[str] = field(default_factory=list)  # the launch is refused unless --force
    warnings: list[str] = field(default_factory=list)  # printed, never refusing
    usage: list[str] = field(default_factory=list)  # the input itself is wrong (exit 2, even with --force)


def preflight(preset: Any, hardware_file: str | None = None) -> Preflight:
    """Doctor's findings for a launch of PRESET here, as lines (doctor.preflight.launch_line). Doctor's
    memory rules are the one source of the fit verdict (they run the same estimate, one finding per
    cause)."""
    from vllm_launcher.doctor import preflight as doctor

    try:
        errors, warnings = doctor.preflight_findings(preset, hardware_file=hardware_file)
    except ConfigError:
        raise  # a bad --hardware file: exit 2
    except Exception as exc:
        return Preflight(warnings=[f"the pre-flight checks failed ({type(exc).__name__}: {exc}); "
                                   "`vllm-launch doctor` shows more"])
    usage = [doctor.launch_line(f) for f in errors if f.code in doctor.LAUNCH_USAGE_CODES]
    return Preflight(problems=[doctor.launch_line(f) for f in errors],
                     warnings=[doctor.launch_line(f) for f in warnings], usage=usage)


def ensure_demo(preset: Any) -> None:
    """Build the demo model once (no downloads) before serving it, showing the build's progress."""
    from vllm_launcher import demo

    if not demo.is_demo_model(preset.model):
        return
    from vllm_launcher.base import output
    from vllm_launcher.demo import tiny_model
    from vllm_launcher.preset.plan import interpreter
    from vllm_launcher.supervise.display import BuildDisplay, fmt_s

    directory = demo.demo_model_dir()
    if tiny_model.is_complete(directory):
        return
    output.err("vllm-launch: building the demo model, once (no downloads: a tokenizer, random weights, then "
               "a minute or two of training to call tools)")
    display = BuildDisplay()
    started = time.monotonic()
    try:
        demo.ensure_demo_model(interpreter(preset), on_progress=display.update)
    finally:
        display.done()
    output.err(f"vllm-launch: demo model built in {fmt_s(time.monotonic() - started)} ({directory}; later "
               "starts use it)")
