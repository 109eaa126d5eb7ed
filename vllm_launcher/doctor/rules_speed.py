"""VL13x: will the preset be usably fast? The guide's troubleshooting "Slow CPU inference": use smaller
models (1.5B-3B), reduce max_tokens in requests, use a lower context length.
"""

from __future__ import annotations

from vllm_launcher.doctor.findings import Facts, Hit
from vllm_launcher.doctor.rules_preset import effective_max_model_len, recommended_context

# The guide's CPU models are 1.5B and 3B (Qwen2.5-Coder-3B has 3.09B parameters), both run at 16K context.
CPU_FAST_PARAM_COUNT = 3_500_000_000
CPU_FAST_CONTEXT_TOKENS = 16384


def slow_cpu_inference(facts: Facts) -> Hit | None:
    p = facts.preset
    if p.device != "cpu":
        return None
    slow: list[str] = []
    fixes: list[str] = []
    params = getattr(facts.arch, "param_count", 0) or 0
    if params > CPU_FAST_PARAM_COUNT:
        slow.append(f"{p.model} has {params / 1e9:.1f}B parameters")
        fixes.append("use a smaller model (1.5B-3B, e.g. Qwen/Qwen2.5-Coder-1.5B-Instruct)")
    length = effective_max_model_len(facts)
    # A context the client's fixed prompt needs is not "large", whatever its size.
    needed = recommended_context(p.client_prompt_tokens) if p.client_prompt_tokens else 0
    long_context = bool(length and length > max(CPU_FAST_CONTEXT_TOKENS, needed))
    if long_context:
        slow.append(f"max_model_len {length} is above the guide's {CPU_FAST_CONTEXT_TOKENS} for CPU models")
    if not slow:
        return None
    fixes.append("reduce max_tokens in requests")
    if long_context:
        fixes.append(f"lower max_model_len (--max-model-len {max(CPU_FAST_CONTEXT_TOKENS, needed)})")
    else:
        fixes.append("keep max_model_len low (no more than the client's prompt and answers need)")
    return Hit(f"{' and '.join(slow)}: expect slow inference on the CPU (the guide's \"Slow CPU inference\")",
               "; ".join(fixes))
