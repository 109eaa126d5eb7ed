"""Exporters: one preset rendered for the tools that run vLLM elsewhere.

    EXPORTERS[fmt](preset, options) -> {filename: text}   (ordered; pure, no I/O)

Formats: docker (run.sh), compose (compose.yaml), k8s (deployment.yaml, service.yaml[, pvc.yaml]),
lws (lws.yaml, service.yaml), ray (ray-head.sh, ray-worker.sh), systemd (vllm-PRESET.service).
Single-machine formats refuse multi-node presets and lws/ray refuse single-node ones, with a ConfigError.
`render()` is the entry point for the CLI; `as_text()` and `write_files()` are its two outputs.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from vllm_launcher.base.errors import ConfigError, LaunchError

# The registry (and with it pydantic and the preset schema) loads on first use, so that the render cache
# (exporters.cache) can answer a repeated `render` without importing either.
_LAZY = {"EXPORTERS": "registry", "FORMATS": "registry", "MULTI_NODE_FORMATS": "registry",
         "SINGLE_NODE_FORMATS": "registry", "Exporter": "registry", "applicable_formats": "registry",
         "render": "registry", "ExportOptions": "options", "make_options": "options"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
    return getattr(module, name)


def as_text(files: dict[str, str]) -> str:
    """What stdout shows: the one file, or each after a `# --- FILENAME` line. The YAML files start with
    `---`, so the whole k8s/lws output is one valid multi-document stream (`| kubectl apply -f -`)."""
    if len(files) == 1:
        return next(iter(files.values()))
    return "".join(f"# --- {name}\n{text}" for name, text in files.items())


def write_files(files: dict[str, str], directory: str | Path) -> list[Path]:
    """Write the files into `directory` (created if missing) as one set (atomic.write_all): temporary files
    in the same directory, then renames, so a reader never sees half a file and a failure (a full disk)
    changes none of them. Scripts (*.sh) are made executable. Returns the paths written. Raises
    LaunchError on I/O failure."""
    from vllm_launcher.base import atomic

    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{target} is a file, not a directory", source="--output")
    staged = {target / name: (text, 0o755 if name.endswith(".sh") else 0o644) for name, text in files.items()}
    try:
        target.mkdir(parents=True, exist_ok=True)
        atomic.write_all(staged)
    except OSError as exc:
        raise LaunchError(f"cannot write {target}: {exc.strerror or exc}") from None
    return list(staged)
