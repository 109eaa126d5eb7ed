"""Run the real `vllm-launch` CLI with isolated XDG directories: in this process by default (the same entry
point, stdout and stderr captured, the environment and working directory swapped in and restored), or in
a subprocess where a process of its own is the point."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def isolated_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The user's env with XDG config/state/cache under tmp_path, so no real user preset leaks in."""
    env = dict(os.environ)
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        path = tmp_path / var.lower()
        path.mkdir(parents=True, exist_ok=True)
        env[var] = str(path)
    env.update(extra)
    return env


def run_in_process(args: list[str], env: dict[str, str],
                   cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`vllm-launch ARGS` through vllm_launcher.cli.run in this process. An exception that escapes it is a
    traceback a user would have seen: it fails the calling test."""
    from vllm_launcher.cli import run

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    try:
        if cwd is not None:
            os.chdir(cwd)
        with redirect_stdout(out), redirect_stderr(err):
            code = run(list(args))
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(["vllm-launch", *args], code, out.getvalue(), err.getvalue())


def run_cli(args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 120,
            subprocess_: bool = False) -> subprocess.CompletedProcess[str]:
    if not subprocess_:
        return run_in_process(args, env, cwd)
    return subprocess.run([sys.executable, "-m", "vllm_launcher", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False)


def render_json(args: list[str], env: dict[str, str]) -> dict:
    result = run_cli(["render", *args, "--format", "json"], env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def user_presets_dir(env: dict[str, str]) -> Path:
    path = Path(env["XDG_CONFIG_HOME"]) / "vllm-launch" / "presets"
    path.mkdir(parents=True, exist_ok=True)
    return path
