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


# Warnings that `up` (and `up --dry-run`) prints before starting, without refusing: the server would work,
# but not safely (a network-facing server without an API key).
LAUNCH_WARNINGS: frozenset[str] = frozenset({"VL116"})


def _line(finding: Any) -> str:
    fix = f" — fix: {finding.fix}" if finding.fix else ""
    return f"{finding.code} {finding.message}{fix}"


def preflight_findings(preset: Any, *, hardware_file: str | None = None,
                       skip: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """(errors, warnings) of doctor for a launch of PRESET here, each one line "CODE message — fix: ...".
    Errors doom the launch (static, memory and this preset's environment: port, vLLM install and version,
    tool parsers); warnings are LAUNCH_WARNINGS, printed by `up` and `--dry-run` without refusing.

    hardware_file: check against a saved probe instead of this machine (then ports and installs are not
    looked at). skip: codes the caller checks itself (so nothing is reported twice)."""
    from vllm_launcher import hardware as hardware_mod
    from vllm_launcher.doctor.engine import check_preset

    if hardware_file:
        hardware, local = hardware_mod.load_hardware(hardware_file), False
    else:
        hardware, local = hardware_mod.probe(include_gpus=preset.device == "cuda"), True
    skipped = set(skip)
    errors, warnings = [], []
    for finding in check_preset(preset, hardware, local=local):
        if finding.code in skipped:
            continue
        if finding.severity == "error" or finding.code in LAUNCH_FATAL:
            errors.append(_line(finding))
        elif finding.code in LAUNCH_WARNINGS:
            warnings.append(_line(finding))
    return errors, warnings


def preflight_errors(preset: Any, *, hardware_file: str | None = None, skip: Iterable[str] = ()) -> list[str]:
    """The errors of `preflight_findings`: the reasons a launch of PRESET here is doomed."""
    return preflight_findings(preset, hardware_file=hardware_file, skip=skip)[0]
