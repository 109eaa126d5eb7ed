"""VL190: what doctor could not load, so that other checks did not run (the model's architecture; VL100, a
preset that does not load, is made by doctor.engine, which has no facts to run a rule on).
"""

from __future__ import annotations

from vllm_launcher.doctor.findings import Facts, Hit


def arch_unknown(facts: Facts) -> Hit | None:
    if facts.arch is not None or facts.arch_error is None:
        return None
    from vllm_launcher.doctor.rules_model import model_unavailable

    if model_unavailable(facts) is not None:
        return None  # VL124 says why, with the fix
    reason = " ".join(facts.arch_error.split())  # whole (never cut mid-word), on one line
    fix = "" if "download" in reason else ("give a local model directory, or download its config.json once "
                                           f"(hf download {facts.preset.model} config.json)")
    return Hit(f"architecture and memory checks skipped: {reason}", fix)
