"""Start-up cost: the read-only commands never import torch, vllm or transformers, and the fast path
agrees with the typer CLI."""

from __future__ import annotations

import io
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from cli_helpers import isolated_env, user_presets_dir

# The gateway's server stack is loaded only by `gateway` itself.
HEAVY = ("torch", "vllm", "transformers", "aiohttp", "prometheus_client", "uvloop")
PROBE = (
    "import sys, atexit\n"
    "atexit.register(lambda: sys.stderr.write('\\nHEAVY:' + "
    f"','.join(m for m in {HEAVY!r} if m in sys.modules)))\n"
    "from vllm_launcher.cli import main\n"
    "main(sys.argv[1:])\n"
)


@pytest.mark.parametrize("args", [
    ["--help"], ["render", "--help"], ["render", "gpu-7b"], ["render", "cpu-16k", "-f", "json"],
    ["render", "gpu-7b", "--entrypoint", "serve"], ["show", "cpu-3b"], ["presets"], ["presets", "--json"],
    ["render", "nope"], ["render", "gpu-7b", "-f", "k8s"], ["render", "cpu-16k", "-f", "compose"],
    ["gateway", "--help"], ["gateway", "cpu-test", "--render", "systemd"], ["status"],
])
def test_no_heavy_imports(args: list[str], tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", PROBE, *args], env=isolated_env(tmp_path),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.stderr.rstrip().endswith("HEAVY:"), result.stderr[-2000:]


def _run_in_process(fn, *args) -> tuple[str, str, int]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            fn(*args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
    return out.getvalue(), err.getvalue(), code


@pytest.mark.parametrize("args", [
    ["render", "gpu-7b"], ["render", "cpu-16k", "--kv-cache", "8", "-f", "json"],
    ["render", "gpu-7b", "--format=json", "--entrypoint", "serve", "--port=9000", "--tp", "2"],
    ["render", "cpu-test", "--set", "max_num_seqs=3", "--set", "env.A=1", "--dtype", "bfloat16"],
    ["show", "cpu-3b", "--max-model-len", "4096"], ["presets"], ["presets", "--json"],
    ["render", "gpu-7b", "--port", "0"], ["render", "missing-preset"],
    ["render", "gpu-7b", "-f", "k8s", "--name", "coder", "--namespace", "ai", "--startup-timeout", "1200"],
    ["render", "cpu-16k", "-f", "docker", "--image-tag", "v0.32.0"], ["render", "llama-70b-2x8", "-f", "ray"],
    ["render", "llama-70b-2x8", "-f", "lws", "--lws-mode", "native"], ["render", "gpu-7b", "-f", "lws"],
    ["render", "gpu-7b", "-f", "systemd", "--user", "svc"],
    ["render", "gpu-7b", "-f", "k8s", "--name", "vllm"],
])
def test_fast_path_matches_typer(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", "__all__")  # the fast path sets it; restore after
    for var, value in isolated_env(tmp_path).items():
        if var.startswith("XDG_"):
            monkeypatch.setenv(var, value)
    from vllm_launcher.cli import fastpath
    from vllm_launcher.cli import main as entry_main

    handled: list[bool] = []
    original = fastpath.run

    def spy(argv: list[str]) -> int | None:
        code = original(argv)
        handled.append(code is not None)  # None: not handled, typer parses it
        return code

    monkeypatch.setattr(fastpath, "run", spy)
    fast = _run_in_process(entry_main, args)
    monkeypatch.setattr(fastpath, "run", lambda argv: None)  # the typer app only
    slow = _run_in_process(entry_main, args)
    assert fast == slow
    assert handled == [True] or fast[2] != 0  # errors may be reported by either path, identically


def test_plan_cache_sees_every_change(tmp_path: Path) -> None:
    from cli_helpers import render_json

    env = isolated_env(tmp_path)
    mine = tmp_path / "mine.yaml"
    mine.write_text("extends: cpu-test\nport: 8100\n")
    assert "8100" in render_json([str(mine)], env)["argv"]
    assert "8100" in render_json([str(mine)], env)["argv"]  # served from the cache
    assert list((Path(env["XDG_CACHE_HOME"]) / "vllm-launch" / "plans").glob("*.json"))
    mine.write_text("extends: cpu-test\nport: 8200\n")  # same size, new content
    assert "8200" in render_json([str(mine)], env)["argv"]
    # A new user preset that shadows the parent changes the result although no file in the chain changed.
    (user_presets_dir(env) / "cpu-test.yaml").write_text("model: shadow/model\ndevice: cpu\n")
    assert "shadow/model" in render_json([str(mine)], env)["argv"]
    (user_presets_dir(env) / "cpu-test.yaml").unlink()
    assert "Qwen/Qwen2.5-Coder-1.5B-Instruct" in render_json([str(mine)], env)["argv"]
    mine.write_text("extends: cpu-test\nport: 0\n")  # an error is never served from the cache
    from cli_helpers import run_cli

    assert run_cli(["render", str(mine)], env).returncode == 2
