"""tune's grid and its choice (pure but for the estimate's inputs).

The grid is max_num_seqs x max_num_batched_tokens (and, when asked, prefix caching off and chunked prefill
off), bounded by the memory estimate: no candidate whose KV cache cannot hold max_num_seqs sequences of the
workload's longest request (vLLM would preempt), none the estimate says does not fit, none vLLM refuses
(batched below max_num_seqs; without chunked prefill, batched below the context). A model the estimate
cannot read gets DEFAULT_SEQS x DEFAULT_BATCHED, unbounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vllm_launcher.base.errors import ConfigError, LaunchError

GRID_SEQS = (1, 2, 4, 8, 16, 32, 64)
GRID_BATCHED = (512, 1024, 2048, 4096, 8192)
DEFAULT_SEQS = (1, 4, 16)
DEFAULT_BATCHED = (1024, 4096)
MIN_GOOD_SHARE = 0.9  # a candidate meets the SLO when this share of its requests meets every SLO
MAX_LIST = 32


@dataclass
class Candidate:
    settings: dict[str, Any]  # preset fields: max_num_seqs, max_num_batched_tokens, enable_chunked_prefill,
    # and prefix_caching (False: --no-enable-prefix-caching in extra_args)
    why_not: str | None = None  # the estimate's reason to leave it out
    kv_cache_tokens: int | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    meets_slo: bool = False
    notes: list[str] = field(default_factory=list)

    def label(self) -> str:
        parts = [
            f"seqs={self.settings['max_num_seqs']}",
            f"batched={self.settings['max_num_batched_tokens']}",
        ]
        if self.settings.get("prefix_caching") is False:
            parts.append("no-prefix-caching")
        if self.settings.get("enable_chunked_prefill") is False:
            parts.append("no-chunked-prefill")
        return " ".join(parts)


def parse_list(text: str | None, option: str, low: int = 1, high: int = 10_000_000) -> list[int] | None:
    """`1,4,16` -> [1, 4, 16] (sorted, distinct); None when not given. ConfigError for anything else."""
    if text is None:
        return None
    values = set()
    for part in text.split(","):
        try:
            value = int(part.strip())
        except ValueError:
            raise ConfigError(
                f"expected whole numbers such as 2,4,8, not {part.strip()!r}", source=option
            ) from None
        if not low <= value <= high:
            raise ConfigError(f"must be between {low} and {high}, not {value}", source=option)
        values.add(value)
    if len(values) > MAX_LIST:
        raise ConfigError(f"at most {MAX_LIST} values", source=option)
    return sorted(values)


def prefix_caching_args(extra_args: list[str], on: bool) -> list[str]:
    """EXTRA_ARGS with prefix caching forced OFF (on: left as the preset has it)."""
    kept = [a for a in extra_args if a not in ("--enable-prefix-caching", "--no-enable-prefix-caching")]
    return extra_args if on else [*kept, "--no-enable-prefix-caching"]


def overrides_for(settings: dict[str, Any], extra_args: list[str]) -> list[tuple[str, str, Any]]:
    """The `--set` overrides that make a preset into the candidate."""
    found: list[tuple[str, str, Any]] = [
        (f"--set {key}", key, value) for key, value in settings.items() if key != "prefix_caching"
    ]
    if settings.get("prefix_caching") is False:
        found.append(("--set extra_args", "extra_args", prefix_caching_args(extra_args, on=False)))
    return found


def grid(
    preset: Any,
    hardware: Any,
    workload_tokens: int,
    seqs: list[int] | None,
    batched: list[int] | None,
    try_prefix_off: bool,
    try_chunked_off: bool,
    limit: int,
) -> tuple[list[Candidate], list[Candidate], str]:
    """(candidates to run, candidates the estimate left out, how the grid was bounded)."""
    from vllm_launcher.memory.arch import load_arch
    from vllm_launcher.memory.estimate import estimate

    try:
        arch = load_arch(preset.model)
    except (LaunchError, ValueError, OSError):
        arch = None
    context = preset.max_model_len
    if arch is None:
        seqs = seqs or list(DEFAULT_SEQS)
        batched = batched or list(DEFAULT_BATCHED)
        how = f"the estimate does not know {preset.model}: the default grid, unbounded"
    else:
        seqs = seqs or list(GRID_SEQS)
        batched = batched or list(GRID_BATCHED)
        how = f"bounded by the estimate: KV cache for max_num_seqs requests of {workload_tokens} tokens"
    kept: list[Candidate] = []
    left: list[Candidate] = []
    for n in seqs:
        for b in batched:
            variants: list[dict[str, Any]] = [{"max_num_seqs": n, "max_num_batched_tokens": b}]
            if try_prefix_off:
                variants.append({"max_num_seqs": n, "max_num_batched_tokens": b, "prefix_caching": False})
            if try_chunked_off:
                variants.append(
                    {"max_num_seqs": n, "max_num_batched_tokens": b, "enable_chunked_prefill": False}
                )
            for settings in variants:
                candidate = Candidate(settings)
                candidate.why_not = _refused(settings, context, workload_tokens)
                if candidate.why_not is None and arch is not None:
                    _bound(candidate, preset, arch, hardware, workload_tokens, estimate)
                (left if candidate.why_not else kept).append(candidate)
    if len(kept) > limit:
        step = len(kept) / limit
        chosen = {round(i * step) for i in range(limit)}
        left += [
            Candidate(c.settings, why_not=f"beyond --max-candidates {limit}")
            for i, c in enumerate(kept)
            if i not in chosen
        ]
        kept = [c for i, c in enumerate(kept) if i in chosen]
    return kept, left, how


def _refused(settings: dict[str, Any], context: int | None, workload_tokens: int) -> str | None:
    n, b = settings["max_num_seqs"], settings["max_num_batched_tokens"]
    if b < n:
        return f"max_num_batched_tokens {b} is below max_num_seqs {n} (vLLM refuses it)"
    if settings.get("enable_chunked_prefill") is False:
        needed = context or workload_tokens
        if b < needed:
            return f"without chunked prefill, max_num_batched_tokens {b} must hold the context ({needed})"
    return None


def _bound(
    candidate: Candidate, preset: Any, arch: Any, hardware: Any, workload_tokens: int, estimate: Any
) -> None:
    settings = {k: v for k, v in candidate.settings.items() if k != "prefix_caching"}
    try:
        est = estimate(preset.model_copy(update=settings), arch, hardware)
    except (LaunchError, ValueError, ArithmeticError) as exc:
        candidate.why_not = f"no estimate: {exc}"
        return
    candidate.kv_cache_tokens = est.kv_cache_tokens
    n = candidate.settings["max_num_seqs"]
    if not est.fits:
        candidate.why_not = "does not fit: " + "; ".join(est.reasons[:1])
    elif est.kv_cache_tokens < n * workload_tokens:
        candidate.why_not = (
            f"KV cache holds {est.kv_cache_tokens} tokens, not {n} x {workload_tokens} (vLLM would preempt)"
        )


def judge(candidate: Candidate, slo: dict[str, float]) -> None:
    """Does the candidate's run meet the SLO: no failed request and at least MIN_GOOD_SHARE of its requests
    within every SLO (vLLM's per-request goodput)? Without SLO: every request completed."""
    result = candidate.result
    if not result or candidate.error:
        candidate.meets_slo = False
        return
    if result.get("completed", 0) == 0 or result.get("failed", 0) > 0:
        candidate.meets_slo = False
        return
    if not slo:
        candidate.meets_slo = True
        return
    goodput, throughput = result.get("request_goodput") or 0.0, result.get("request_throughput") or 0.0
    candidate.meets_slo = throughput > 0 and goodput >= MIN_GOOD_SHARE * throughput


def choose(candidates: list[Candidate], slo: dict[str, float]) -> Candidate | None:
    """The highest goodput among those that meet the SLO; without an SLO the highest output throughput."""
    for candidate in candidates:
        judge(candidate, slo)
    eligible = [c for c in candidates if c.meets_slo and c.result]
    if not eligible:
        return None
    key = "request_goodput" if slo else "output_throughput"
    return max(eligible, key=lambda c: (c.result or {}).get(key) or 0.0)
