"""A cache of rendered files, so a repeated `render --format FMT` costs what `render --format json` does.

Same idea as plan_cache: an entry is keyed on everything the output depends on besides files (preset
reference, overrides, format, options, interpreter, working directory, preset and cache locations) and
stores the stat signature of every file and directory it was built from: the preset files, the preset
directories, and the Hugging Face cache directories the model's size was looked up in. Any change misses
and rebuilds. Only successful renders are stored; errors always come from a full validation.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from vllm_launcher import paths

FORMAT_VERSION = 1
_ENV_KEYS = ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")


def _signature(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino]


def _entry_path(ref: str, overrides: list, fmt: str, option_values: dict[str, Any]) -> Path:
    from vllm_launcher import __version__

    key = json.dumps([FORMAT_VERSION, __version__, ref, overrides, fmt, sorted(option_values.items()),
                      sys.executable, os.getcwd(), str(paths.builtin_presets_dir()),
                      str(paths.user_presets_dir()), [os.environ.get(k) for k in _ENV_KEYS]], default=str)
    return paths.cache_dir() / "renders" / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")


def _model_deps(model: str) -> list[str]:
    """Where models.load_arch looks for a model's config: a local directory, or the HF cache dirs."""
    try:
        from vllm_launcher.models import hf_cache_dirs
    except ImportError:
        return []
    deps = [model] if model.startswith(("/", ".", "~")) else []
    for hub in hf_cache_dirs():
        deps += [str(hub), str(hub / ("models--" + model.replace("/", "--")))]
    return deps


def cached_render(ref: str, overrides: list, fmt: str, option_values: dict[str, Any]) -> dict[str, str]:
    """{filename: text} for a preset reference, overrides, a format and CLI option values (None: default):
    from the cache when nothing it depends on changed, else resolved, validated and rendered in full
    (raising ConfigError) and stored."""
    values = {k: v for k, v in option_values.items() if v is not None}
    entry = _entry_path(ref, overrides, fmt, values)
    try:
        data = json.loads(entry.read_text(encoding="utf-8"))
        if all(_signature(dep) == sig for dep, sig in data["deps"]):
            return dict(data["files"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    from vllm_launcher.exporters.options import make_options
    from vllm_launcher.exporters.registry import render
    from vllm_launcher.presets import resolve

    resolved = resolve(ref, overrides)
    files = render(fmt, resolved, make_options(**values))
    deps = [str(paths.builtin_presets_dir()), str(paths.user_presets_dir()), *resolved.chain,
            *_model_deps(resolved.preset.model)]
    if ref.endswith((".yaml", ".yml")) or "/" in ref:
        deps.append(str(Path(ref).parent))
    record = {"files": files, "deps": [[dep, _signature(dep)] for dep in deps]}
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, entry)
    except OSError:
        pass  # a read-only cache only costs speed
    return files
