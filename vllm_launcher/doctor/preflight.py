"""The doctor findings that decide a launch: `up`'s one pre-flight (supervise.preflight formats them).

Errors doom the launch; LAUNCH_FATAL warnings are certain failures for a launch on the machine checked;
LAUNCH_WARNINGS are printed without refusing.
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
# A host that is not an address of this machine is a usage error of `up` (exit 2, even with --force): like
# every usage error it reads as a plain sentence about the input, without a rule code.
LAUNCH_USAGE_CODES: frozenset[str] = frozenset({"VL309"})


def launch_line(finding: Any) -> str:
    """One finding as a line of `up`'s pre-flight: "CODE message — fix: ..." (usage errors: no CODE)."""
    fix = f" — fix: {finding.fix}" if finding.fix else ""
    code = "" if finding.code in LAUNCH_USAGE_CODES else f"{finding.code} "
    return f"{code}{finding.message}{fix}"


def preflight_findings(preset: Any, *, hardware_file: str | None = None,
                       skip: Iterable[str] = ()) -> tuple[list[Any], list[Any]]:
    """(errors, warnings) of doctor for a launch of PRESET here: errors doom the launch (static, memory and
    this preset's environment: port, host, vLLM installed and its version, tool parsers, secrets);
    warnings are LAUNCH_WARNINGS, printed by `up` and `--dry-run` without refusing. The one pre-flight of
    `up`: it checks nothing else itself.

    hardware_file: check against a saved probe instead of this machine (then ports and installs are not
    looked at). skip: codes not to report."""
    from vllm_launcher.doctor.engine import check_preset
    from vllm_launcher.machine import hardware as hardware_mod

    if hardware_file:
        hardware, local = hardware_mod.load_hardware(hardware_file), False
    else:
        hardware, local = hardware_mod.probe(include_gpus=preset.device == "cuda"), True
    errors, warnings = [], []
    skipped = set(skip)
    for finding in check_preset(preset, hardware, local=local):
        if finding.code in skipped:
            continue
        if finding.severity == "error" or finding.code in LAUNCH_FATAL:
            errors.append(finding)
        elif finding.code in LAUNCH_WARNINGS:
            warnings.append(finding)
    return errors, warnings


def preflight_errors(preset: Any, *, hardware_file: str | None = None, skip: Iterable[str] = ()) -> list[str]:
    """The errors of `preflight_findings` as lines: the reasons a launch of PRESET here is doomed."""
    return [launch_line(f) for f in preflight_findings(preset, hardware_file=hardware_file, skip=skip)[0]]
