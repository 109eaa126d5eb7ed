"""Doctor: rules with stable codes (findings.py), static checks (rules_*.py), live checks (live.py) and
vLLM log explanations (logs.py). See engine.run_doctor for the whole run, and `preflight_errors` for the
checks `vllm-launch up` runs before spawning.

Nothing heavy is imported here: `supervise` imports `doctor.logs` (through this package) in its small
background process.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Warnings that, for a launch on the machine checked, are certain failures: `doctor` over every preset
# keeps them warnings (a GPU preset checked on a laptop is not an error), `up` refuses.
LAUNCH_FATAL: frozenset[str] = frozenset({"VL108"})  # device cuda, no GPU visible


def preflight_errors(preset: Any, *, hardware_file: str | None = None, skip: Iterable[str] = ()) -> list[str]:
    """The doctor errors that doom a launch of PRESET here (static, memory and this preset's environment:
    port, vLLM install and version, tool parsers), each as one line "CODE message — fix: ...".

    hardware_file: check against a saved probe instead of this machine (then ports and installs are not
    looked at). skip: codes the caller checks itself (so nothing is reported twice)."""
    from vllm_launcher import hardware as hardware_mod
    from vllm_launcher.doctor.engine import check_preset

    if hardware_file:
        hardware, local = hardware_mod.load_hardware(hardware_file), False
    else:
        hardware, local = hardware_mod.probe(include_gpus=preset.device == "cuda"), True
    skipped = set(skip)
    lines = []
    for finding in check_preset(preset, hardware, local=local):
        fatal = finding.severity == "error" or finding.code in LAUNCH_FATAL
        if fatal and finding.code not in skipped:
            fix = f" — fix: {finding.fix}" if finding.fix else ""
            lines.append(f"{finding.code} {finding.message}{fix}")
    return lines
