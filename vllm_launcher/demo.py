"""The demo model: a reserved model id that stands for a tiny Qwen2 model built locally, never downloaded.

`vllm-launch up demo` serves `vllm-launch/tiny-qwen2`; before spawning, `ensure_demo_model` has the
preset's interpreter (the one with torch, safetensors, tokenizers and transformers) run `tiny_model.py
--tools` into the cache directory: random weights trained for a minute to call tools (hermes). The
directory name carries a hash of the builder's source, so a changed builder builds anew.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from vllm_launcher import paths
from vllm_launcher.errors import LaunchError

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


def ensure_demo_model(python: str, timeout_s: float = BUILD_TIMEOUT_S) -> Path:
    """Build the demo model with `python` (which needs torch, safetensors, tokenizers and transformers: vLLM's
    interpreter has them), trained to call tools, unless it is already complete; returns its directory.
    Raises LaunchError with the builder's last stderr lines on failure."""
    import subprocess

    from vllm_launcher import tiny_model

    out = demo_model_dir()
    if tiny_model.is_complete(out):
        return out
    argv = [python, str(BUILDER_PATH), "--out", str(out), "--tools"]
    try:
        result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout_s,
                                stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise LaunchError(f"cannot build the demo model: interpreter not found: {python}") from None
    except subprocess.TimeoutExpired:
        raise LaunchError(f"building the demo model with {python} took more than {timeout_s:g} s") from None
    if result.returncode != 0 or not tiny_model.is_complete(out):
        tail = " | ".join(line for line in result.stderr.strip().splitlines()[-_STDERR_LINES:] if line)
        raise LaunchError(f"building the demo model with {python} failed (exit {result.returncode}): "
                          f"{tail or 'no output'}")
    return out
