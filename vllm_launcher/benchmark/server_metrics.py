"""The server's own view of a run, from its Prometheus `/metrics` before and after: prefix-cache hit rate,
preemptions, KV-cache usage (vLLM's names; labels summed over engines)."""

from __future__ import annotations

import re
from typing import Any

# name -> the families that carry it (newest name first; vLLM renamed gpu_cache_usage_perc)
FAMILIES: dict[str, tuple[str, ...]] = {
    "prefix_cache_queries": ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_queries"),
    "prefix_cache_hits": ("vllm:prefix_cache_hits_total", "vllm:prefix_cache_hits"),
    "preemptions": ("vllm:num_preemptions_total", "vllm:num_preemptions"),
    "kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    "running": ("vllm:num_requests_running",),
    "waiting": ("vllm:num_requests_waiting",),
}
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse(text: str) -> dict[str, float]:
    """The samples we read from a /metrics text, summed over label sets; absent ones are left out."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        found = _SAMPLE.match(line)
        if not found:
            continue
        try:
            value = float(found.group(3))
        except ValueError:
            continue
        sums[found.group(1)] = sums.get(found.group(1), 0.0) + value
    values: dict[str, float] = {}
    for name, families in FAMILIES.items():
        for family in families:
            if family in sums:
                values[name] = sums[family]
                break
    return values


def delta(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, Any]:
    """What the run did to the server: prefix-cache hit rate over the run's queries, preemptions during it,
    KV-cache usage after it (and before). Missing figures are None (not a vLLM, or /metrics not served)."""
    before, after = before or {}, after or {}

    def change(name: str) -> float | None:
        if name not in after:
            return None
        return after[name] - before.get(name, 0.0)

    queries, hits = change("prefix_cache_queries"), change("prefix_cache_hits")
    rate = hits / queries if queries and hits is not None and queries > 0 else None
    preemptions = change("preemptions")
    return {
        "prefix_cache_queries": queries,
        "prefix_cache_hits": hits,
        "prefix_cache_hit_rate": rate,
        "preemptions": int(preemptions) if preemptions is not None else None,
        "kv_cache_usage_before": before.get("kv_cache_usage"),
        "kv_cache_usage_after": after.get("kv_cache_usage"),
        "kv_cache_usage_peak": None,
    }
