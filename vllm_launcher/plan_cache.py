"""Validated launch plans, cached on the stat of their preset files (see stat_cache)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vllm_launcher import stat_cache
from vllm_launcher.plan import LaunchPlan

if TYPE_CHECKING:
    from vllm_launcher.presets import Override


def cached_plan(ref: str, overrides: list[Override], entrypoint: str) -> LaunchPlan:
    """The plan for a preset reference and overrides: from the cache when nothing it depends on changed,
    else resolved and validated in full (raising ConfigError) and stored."""
    entry = stat_cache.entry_path("plans", [ref, overrides, entrypoint])
    cached = stat_cache.load(entry)
    if cached is not None:
        return LaunchPlan(**cached)
    from vllm_launcher.plan import build_plan, plan_deps
    from vllm_launcher.presets import resolve

    resolved = resolve(ref, overrides)
    plan = build_plan(resolved.preset, entrypoint)  # type: ignore[arg-type]
    value = {"argv": plan.argv, "env": plan.env, "secret_env": plan.secret_env}
    stat_cache.store(entry, value, [*stat_cache.preset_deps(ref, resolved), *plan_deps(resolved.preset)])
    return plan
