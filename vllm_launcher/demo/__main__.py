"""`python -m vllm_launcher.demo`: build the demo model now, where `up demo` looks for it (scripts/install.sh
runs it, so that the first `up demo` only starts vLLM). Nothing is done when it is built already. A line per
stage and per 100 training steps on stderr; exit 1 with one line when the build fails."""

from __future__ import annotations

import sys
import time

from vllm_launcher import demo
from vllm_launcher.base import output
from vllm_launcher.base.errors import LaunchError

STEPS_PER_LINE = 100


def main() -> int:
    shown: set[tuple[str, int]] = set()

    def show(state: demo.BuildProgress) -> None:
        mark = (state.stage, (state.done or 0) // STEPS_PER_LINE)
        if mark in shown:
            return
        shown.add(mark)
        steps = f" {state.done}/{state.total} steps" if state.stage == "training" and state.total else ""
        output.err(f"vllm-launch: building the demo model: {state.stage}{steps} · {state.elapsed_s():.0f}s")

    started = time.monotonic()
    try:
        path = demo.ensure_demo_model(sys.executable, on_progress=show)
    except LaunchError as exc:
        output.error_line(str(exc))
        return 1
    output.err(f"vllm-launch: the demo model is ready in {time.monotonic() - started:.0f}s: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
