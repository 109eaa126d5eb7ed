"""VL100, VL190: what doctor could not load, so that other checks did not run (the preset itself, the model's
architecture). Registered here, with the other rules, so that `doctor --list` shows them.
"""

from __future__ import annotations

from vllm_launcher.doctor.findings import Facts, Hit, register, rule

# Made by doctor.engine for each preset file that does not load (there are no facts to run a rule on).
register("VL100", "error", "preset", "the preset does not load (YAML or schema error)")


@rule("VL190", "info", "model architecture unknown: architecture and memory checks skipped")
def arch_unknown(facts: Facts) -> Hit | None:
    if facts.arch is not None or facts.arch_error is None:
        return None
    reason = " ".join(facts.arch_error.split())  # whole (never cut mid-word), on one line
    fix = "" if "download" in reason else ("give a local model directory, or download its config.json once "
                                           f"(hf download {facts.preset.model} config.json)")
    return Hit(f"architecture and memory checks skipped: {reason}", fix)
