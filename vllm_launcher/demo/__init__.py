"""The demo model: a reserved model id that stands for a tiny Qwen2 model built locally, never downloaded.

`vllm-launch up demo` serves `vllm-launch/tiny-qwen2`; before spawning, `ensure_demo_model` has the
preset's interpreter (the one with torch, safetensors, tokenizers and transformers) run `tiny_model.py
--tools --progress` into the cache directory: random weights trained for a minute to call tools (hermes),
its stages and steps reported as it goes (BuildProgress: elapsed and ETA). The directory name carries a
hash of the builder's source, so a changed builder builds anew (old caches are left, never reused).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from vllm_launcher.base import paths
from vllm_launcher.base.errors import LaunchError

if TYPE_CHECKING:
    import subprocess

DEMO_MODEL_ID = "vllm-launch/tiny-qwen2"
DEMO_SERVED_NAME = "demo"
BUILD_TIMEOUT_S = 900.0  # tokenizer, weights and a minute or two of tool-calling training on the CPU
_STDERR_LINES = 8

# The builder runs in the preset's interpreter (the one with torch); here it is only hashed and named.
BUILDER_PATH = (Path(__file__).parent / "tiny_model.py").resolve()


def is_demo_model(model: str) -> bool:
    """Whether a preset's `model` is the reserved id of the demo model."""
    return model.strip() == DEMO_MODEL_ID


@lru_cache(maxsize=1)
def _builder_hash() -> str:
    return hashlib.sha256(BUILDER_PATH.read_bytes()).hexdigest()[:12]


def demo_model_dir() -> Path:
    """Where the demo model lives: `<cache_dir>/models/tiny-qwen2-<hash of tiny_model.py>`."""
    return paths.cache_dir() / "models" / f"tiny-qwen2-{_builder_hash()}"


@dataclass
class BuildProgress:
    """Where a build of the demo model is (the builder's `--progress` lines) and how long it has taken."""

    stage: str = "starting"  # starting, tokenizer, weights, examples, training, saving
    done: int | None = None  # training steps done (stage training)
    total: int | None = None
    started: float = field(default_factory=time.monotonic)
    training_started: float | None = None

    def update(self, stage: str, done: int | None, total: int | None) -> None:
        if stage == "training" and self.training_started is None:
            self.training_started = time.monotonic()
        self.stage, self.done, self.total = stage, done, total

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def eta_s(self) -> float | None:
        """Seconds left, from the pace of training so far (None before a few steps are done)."""
        if self.stage == "saving":
            return 1.0
        if self.stage != "training" or self.training_started is None or not self.total or not self.done \
                or self.done < MIN_STEPS_FOR_ETA:
            return None
        per_step = (time.monotonic() - self.training_started) / self.done
        return per_step * (self.total - self.done) + SAVE_S


MIN_STEPS_FOR_ETA = 10
SAVE_S = 1.0
TICK_S = 0.5
GROUP_GONE_S = 2.0  # how long a killed build's group may take to leave (zombies of a careless init stay)


def ensure_demo_model(python: str, timeout_s: float = BUILD_TIMEOUT_S,
                      on_progress: Callable[[BuildProgress], None] | None = None) -> Path:
    """Build the demo model with `python` (which needs torch, safetensors, tokenizers and transformers: vLLM's
    interpreter has them), trained to call tools, unless it is already complete; returns its directory.
    ON_PROGRESS gets the build's progress at each stage and step and about twice a second. The builder runs
    in its own session and is killed with it on a timeout or Ctrl-C. Raises LaunchError with the builder's
    last stderr lines on failure."""
    import os
    import signal
    import subprocess

    from vllm_launcher.demo import tiny_model

    out = demo_model_dir()
    if tiny_model.is_complete(out):
        return out
    argv = [python, str(BUILDER_PATH), "--out", str(out), "--tools", "--progress"]
    try:
        builder = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True, errors="replace",
                                   start_new_session=True)
    except FileNotFoundError:
        raise LaunchError(f"cannot build the demo model: interpreter not found: {python}") from None
    state = BuildProgress()
    try:
        tail = _follow(builder, state, on_progress, timeout_s, python)
    except BaseException:  # a timeout, Ctrl-C: the builder and anything it started go too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(builder.pid, signal.SIGKILL)
        builder.wait()
        _wait_group_gone(builder.pid, GROUP_GONE_S)
        raise
    if builder.returncode != 0 or not tiny_model.is_complete(out):
        text = " | ".join(line for line in tail if line)
        raise LaunchError(f"building the demo model with {python} failed (exit {builder.returncode}): "
                          f"{text or 'no output'}")
    return out


def _wait_group_gone(pgid: int, timeout_s: float) -> None:
    """SIGKILL is delivered, not yet acted on, when killpg returns: on a loaded machine what the builder
    started can run a few milliseconds more. Return once the group is empty (or only its unreaped zombies
    are left when TIMEOUT_S is up), so that nothing of the build outlives the error."""
    import os

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.02)


def _follow(builder: subprocess.Popen, state: BuildProgress,
            on_progress: Callable[[BuildProgress], None] | None, timeout_s: float, python: str) -> list[str]:
    """Read the builder's stderr until it exits: progress lines into STATE (ON_PROGRESS called at each line
    and every TICK_S), the last other lines returned. LaunchError after TIMEOUT_S."""
    import queue
    import threading

    from vllm_launcher.demo import tiny_model

    deadline = time.monotonic() + timeout_s

    lines: queue.Queue[str | None] = queue.Queue()
    tail: list[str] = []

    def read() -> None:
        assert builder.stderr is not None
        for line in builder.stderr:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    while True:
        if time.monotonic() > deadline:
            raise LaunchError(f"building the demo model with {python} took more than {timeout_s:g} s")
        try:
            line = lines.get(timeout=TICK_S)
        except queue.Empty:
            line = ""
        if line is None:
            builder.wait()
            return tail
        if line.startswith(tiny_model.PROGRESS_PREFIX):
            _read_progress(state, line[len(tiny_model.PROGRESS_PREFIX):])
        elif line:
            tail = [*tail, line][-_STDERR_LINES:]
        if on_progress is not None:
            on_progress(state)


def _read_progress(state: BuildProgress, text: str) -> None:
    try:
        data = json.loads(text)
        state.update(str(data["stage"]), data.get("done"), data.get("total"))
    except (ValueError, KeyError, TypeError):
        return  # not ours to fail on: the build goes on
