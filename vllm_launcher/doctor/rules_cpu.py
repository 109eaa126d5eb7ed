"""VL123: what vLLM's CPU kernels refuse on this CPU. vLLM 0.32 chooses CPU kernels by the CPU's features
(vllm/platforms/cpu.py): on x86 with AMX tiles an MLA model (DeepSeek-V2/V3, Kimi, ...) runs the AMX_MLA
attention backend, which packs its weights in bfloat16/float16 only and keeps an unquantized KV cache.
The rule is the estimate's (kvcache.amx_mla_problems), so `doctor`, `up` and `fit` agree.
"""

from __future__ import annotations

import platform

from vllm_launcher.doctor.findings import Facts, Hit
from vllm_launcher.memory import kvcache


def _x86(facts: Facts) -> bool | None:
    arch = getattr(facts.hardware, "cpu_arch", None)
    if arch is None and facts.local:
        arch = platform.machine() or None
    if arch is None:
        return None
    return arch.lower() in ("x86_64", "amd64", "i686", "i386")


def mla_backend_vs_dtype(facts: Facts) -> list[Hit]:
    from vllm_launcher.memory.estimate import resolve_model_dtype

    p, arch = facts.preset, facts.arch
    if p.device != "cpu" or arch is None or not arch.is_mla:
        return []
    amx_tile = None if facts.cpu_flags is None else "amx_tile" in facts.cpu_flags
    requested = kvcache.requested_attention_backend(p.extra_args)
    backend = kvcache.cpu_mla_backend(amx_tile, _x86(facts), requested)
    dtype = resolve_model_dtype(p.dtype, arch)
    how = "" if p.dtype not in (None, "auto") else " (vLLM's choice when dtype is unset)"
    return [Hit(problem.message.replace(f"dtype {dtype}", f"dtype {dtype}{how}", 1), problem.fix,
                severity=problem.severity)
            for problem in kvcache.amx_mla_problems(backend, dtype, p.kv_cache_dtype)]
