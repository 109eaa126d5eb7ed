"""Run the real `vllm-launch` CLI in a subprocess with isolated XDG directories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def run_cli(args: list[str], env: dict[str, str], cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
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
