"""A cache of rendered files, so a repeated `render --format FMT` costs what `render --format json` does.

Same idea as plan_cache: an entry is keyed on everything the output depends on besides files (preset
reference, overrides, format, options, interpreter, working directory, preset and cache locations) and
stores the stat signature of every file and directory it was built from: the preset files, the preset
directories, and the Hugging Face cache directories the model's size was looked up in. Any change misses
and rebuilds. Only successful renders are stored; errors always come from a full validation.
"""

from __future__ import annotations

from typing import Any

from vllm_launcher import stat_cache

_ENV_KEYS = ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")


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
    import os

    values = {k: v for k, v in option_values.items() if v is not None}
    entry = stat_cache.entry_path("renders", [ref, overrides, fmt, sorted(values.items()),
                                              [os.environ.get(k) for k in _ENV_KEYS]])
    cached = stat_cache.load(entry)
    if cached is not None:
        return dict(cached)
    from vllm_launcher.exporters.options import make_options
    from vllm_launcher.exporters.registry import render
    from vllm_launcher.presets import resolve

    resolved = resolve(ref, overrides)
    files = render(fmt, resolved, make_options(**values))
    stat_cache.store(entry, files, [*stat_cache.preset_deps(ref, resolved), *_model_deps(resolved.preset.model)])
    return files
