"""A cache of validated launch plans, so a repeated `render` needs neither YAML nor pydantic.

Like Python's .pyc files: an entry is keyed on everything the plan depends on besides the preset files
(the preset reference, overrides, entrypoint, interpreter, working directory, preset directories) and
stores the stat signature of every file and directory it was built from. Any change to those (an edit,
a new user preset that shadows a built-in, a removed parent) misses the cache and rebuilds. Only
successful plans are stored; errors always come from a full validation.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vllm_launcher import paths
from vllm_launcher.plan import LaunchPlan

if TYPE_CHECKING:
    from vllm_launcher.presets import Override

FORMAT_VERSION = 1


def _signature(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino]


def _entry_path(ref: str, overrides: list[Override], entrypoint: str) -> Path:
    from vllm_launcher import __version__

    key = json.dumps([FORMAT_VERSION, __version__, ref, overrides, entrypoint, sys.executable, os.getcwd(),
                      str(paths.builtin_presets_dir()), str(paths.user_presets_dir()),
                      str(paths.cache_dir())], default=str)
    return paths.cache_dir() / "plans" / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")


def _load(entry: Path) -> LaunchPlan | None:
    try:
        data = json.loads(entry.read_text(encoding="utf-8"))
        if any(_signature(dep) != sig for dep, sig in data["deps"]):
            return None
        return LaunchPlan(**data["plan"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _store(entry: Path, plan: LaunchPlan, deps: list[str]) -> None:
    record = {"plan": {"argv": plan.argv, "env": plan.env, "secret_env": plan.secret_env},
              "deps": [[dep, _signature(dep)] for dep in deps]}
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, entry)
    except OSError:
        pass  # a read-only cache only costs speed


def cached_plan(ref: str, overrides: list[Override], entrypoint: str) -> LaunchPlan:
    """The plan for a preset reference and overrides: from the cache when nothing it depends on changed,
    else resolved and validated in full (raising ConfigError) and stored."""
    entry = _entry_path(ref, overrides, entrypoint)
    plan = _load(entry)
    if plan is not None:
        return plan
    from vllm_launcher.plan import build_plan
    from vllm_launcher.presets import resolve

    resolved = resolve(ref, overrides)
    plan = build_plan(resolved.preset, entrypoint)  # type: ignore[arg-type]
    # The preset directories: adding or removing a file there can change which file a name resolves to.
    deps = [str(paths.builtin_presets_dir()), str(paths.user_presets_dir()), *resolved.chain]
    if ref.endswith((".yaml", ".yml")) or "/" in ref:
        deps.append(str(Path(ref).parent))
    _store(entry, plan, deps)
    return plan
