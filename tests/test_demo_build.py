"""The first `up demo` builds the demo model: its progress (stage, training steps, elapsed, ETA) is shown
as it goes, and a build that runs too long is killed with everything it started.

The builder here is a stand-in interpreter (a script in tmp_path) that speaks tiny_model.py's `--progress`
protocol and writes the model's files; the real build is what the demo_server tests run."""

from __future__ import annotations

import io
import json
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from vllm_launcher import demo
from vllm_launcher.base.errors import LaunchError
from vllm_launcher.demo import tiny_model
from vllm_launcher.supervise.display import BuildDisplay

STEPS = 40


def stand_in_builder(tmp_path: Path, body: str) -> str:
    """An executable 'python' that gets `tiny_model.py --out DIR --tools --progress` and runs BODY."""
    script = tmp_path / "python"
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(f"""\
        import json, sys, time, pathlib
        args = sys.argv[1:]
        assert args[0].endswith("tiny_model.py") and "--progress" in args and "--tools" in args, args
        out = pathlib.Path(args[args.index("--out") + 1])
        def progress(stage, done=None, total=None):
            sys.stderr.write({tiny_model.PROGRESS_PREFIX!r} + json.dumps(
                {{"stage": stage, "done": done, "total": total}}) + "\\n")
            sys.stderr.flush()
        """) + textwrap.dedent(body))
    script.chmod(0o755)
    return str(script)


BUILDS = f"""
    for stage in ("tokenizer", "weights", "examples"):
        progress(stage)
    sys.stderr.write("a line that is not progress\\n")
    for step in range(0, {STEPS} + 1, 2):
        progress("training", step, {STEPS})
        time.sleep(0.01)
    progress("saving")
    out.mkdir(parents=True)
    for name in {tiny_model.REQUIRED_FILES!r}:
        (out / name).write_text("{{}}")
"""


def test_the_build_reports_each_stage_and_step_with_an_eta(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    seen: list[tuple[str, int | None, float | None]] = []
    path = demo.ensure_demo_model(stand_in_builder(tmp_path, BUILDS),
                                  on_progress=lambda p: seen.append((p.stage, p.done, p.eta_s())))
    assert tiny_model.is_complete(path) and path == demo.demo_model_dir()
    stages = list(dict.fromkeys(stage for stage, _done, _eta in seen))
    assert stages == ["tokenizer", "weights", "examples", "training", "saving"]
    steps = [done for stage, done, _eta in seen if stage == "training"]
    assert steps == sorted(steps) and steps[-1] == STEPS
    etas = {done: eta for stage, done, eta in seen if stage == "training"}
    assert all(etas[d] is None for d in etas if d < demo.MIN_STEPS_FOR_ETA)
    assert all(etas[d] is not None and etas[d] >= 0 for d in etas if d >= demo.MIN_STEPS_FOR_ETA)


def test_the_display_says_stage_steps_elapsed_and_time_left():
    progress = demo.BuildProgress()
    progress.update("training", 0, 400)
    progress.training_started -= 30.0  # 30 s into training, at step 100: 300 steps at 0.3 s are left
    progress.update("training", 100, 400)
    text = BuildDisplay.text(progress)
    assert text.startswith("building the demo model: training it to call tools 100/400 steps · ")
    assert "· about 1m31s left" in text  # 300 × 0.3 s + saving
    stream = io.StringIO()  # not a terminal: one line per stage and per quarter of the training
    display = BuildDisplay(stream)
    for stage in ("tokenizer", "weights"):
        progress.update(stage, None, None)
        display.update(progress)
        display.update(progress)
    for step in range(0, 401, 20):
        progress.update("training", step, 400)
        display.update(progress)
    lines = stream.getvalue().splitlines()
    assert [line.split(": ", 2)[2].split(" · ")[0] for line in lines] == [
        "training the tokenizer", "making random weights", "training it to call tools 0/400 steps",
        "training it to call tools 100/400 steps", "training it to call tools 200/400 steps",
        "training it to call tools 300/400 steps", "training it to call tools 400/400 steps"]
    assert "\x1b" not in stream.getvalue()


def test_a_build_past_its_timeout_is_killed_with_its_children(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    pid_file = tmp_path / "child.pid"
    hangs = f"""
        import subprocess
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        pathlib.Path({str(pid_file)!r}).write_text(str(child.pid))
        progress("tokenizer")
        time.sleep(600)
    """
    with pytest.raises(LaunchError, match="took more than 3 s"):
        demo.ensure_demo_model(stand_in_builder(tmp_path, hangs), timeout_s=3)
    child = int(pid_file.read_text())
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    assert not demo.demo_model_dir().exists()


def test_the_builder_speaks_the_progress_protocol():
    lines = []
    tiny_model._report_progress = True
    try:
        import contextlib

        buffer = io.StringIO()
        with contextlib.redirect_stderr(buffer):
            tiny_model.progress("training", 5, 400)
        lines = buffer.getvalue().splitlines()
    finally:
        tiny_model._report_progress = False
    assert lines == [tiny_model.PROGRESS_PREFIX + json.dumps({"stage": "training", "done": 5, "total": 400})]
