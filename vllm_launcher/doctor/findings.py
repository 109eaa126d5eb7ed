"""What doctor reports: `Finding` values, the `Facts` static rules look at, and the `Rule` type.

Every check has a stable code (`VL1xx` preset, `VL2xx` memory/fit, `VL3xx` environment, `VL4xx` live
server, `VL5xx` log explanation), a default severity and a one-line title, listed once in
doctor.registry. Static rules are plain functions `Facts -> Hit | list[Hit] | None`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

if TYPE_CHECKING:
    from vllm_launcher.doctor.environment import PortOwner
    from vllm_launcher.machine.hardware import Hardware
    from vllm_launcher.memory.arch import ModelArch
    from vllm_launcher.memory.estimate import Estimate
    from vllm_launcher.preset.schema import Preset

Severity = Literal["error", "warning", "info"]
Scope = Literal["preset", "environment", "live", "log"]
SEVERITY_ORDER: dict[str, int] = {"error": 0, "warning": 1, "info": 2}


class Finding(BaseModel):
    """One thing doctor found: which rule, how bad, for which preset (None: the machine), and the fix."""

    code: str
    severity: Severity
    preset: str | None = None
    message: str
    fix: str = ""


@dataclass(frozen=True)
class Hit:
    """What a rule function returns: the message and fix; code, preset and default severity are added."""

    message: str
    fix: str = ""
    severity: Severity | None = None  # None: the rule's default


@dataclass
class Facts:
    """Everything a static rule may look at. Built at the edge (`doctor.engine`), plain values inside.

    preset: the preset (a `Preset.model_construct` for raw values in tests); env: the environment vLLM
    would inherit (os env + the preset's env); vllm_version: installed version string or None when not
    installed; tool_parsers: the installed vLLM's parser names (None: unknown); cpu_flags: /proc/cpuinfo
    flags (None: unknown); local: the hardware is this machine (ports, /dev/shm, installs can be looked at).
    """

    preset: Preset
    arch: ModelArch | None = None
    arch_error: str | None = None  # why the architecture could not be loaded (arch is None)
    hardware: Hardware | None = None
    estimate: Estimate | None = None
    env: dict[str, str] = field(default_factory=dict)
    vllm_distribution: str | None = None
    vllm_version: str | None = None
    vllm_checked: bool = False  # False: we could not look (another interpreter, a remote machine)
    vllm_package_dir: str | None = None  # where `import vllm` finds it (None: not importable, or not looked)
    vllm_problem: str | None = None  # why the preset's interpreter could not be asked
    tool_parsers: frozenset[str] | None = None
    cpu_flags: frozenset[str] | None = None
    local: bool = True
    port_owner: PortOwner | None = None  # looked up at the edge
    port_error: str | None = None  # the host:port could not be tried (the host is not an address here)
    managed_running: bool = False  # a managed server of this preset is up (its port is ours)
    target_vllm_version: str | None = None  # `doctor --vllm-version X`: the flags are checked against X


RuleFunc = Callable[..., "Hit | Iterable[Hit] | None"]  # Facts (scope preset) or EnvFacts (environment)


@dataclass(frozen=True)
class Rule:
    """One row of doctor.registry: code, default severity, scope, title, and the function of a static rule."""

    code: str
    severity: Severity
    scope: Scope
    title: str
    func: RuleFunc | None = None

    def finding(self, message: str, fix: str = "", *, preset: str | None = None,
                severity: Severity | None = None) -> Finding:
        """A finding of this rule (its default severity unless one is given)."""
        return Finding(code=self.code, severity=severity or self.severity, preset=preset, message=message,
                       fix=fix)


def run_rule(rule: Rule, facts: object, preset_name: str | None) -> list[Finding]:
    """Call one rule function and turn its hits into findings."""
    if rule.func is None:
        return []
    result = rule.func(facts)
    if result is None:
        return []
    hits = [result] if isinstance(result, Hit) else list(result)
    return [rule.finding(hit.message, hit.fix, preset=preset_name, severity=hit.severity) for hit in hits]


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Machine findings first, then presets in the order seen; inside a group: errors, warnings, info."""
    findings = list(findings)
    order: dict[str | None, int] = {None: -1}
    for f in findings:
        order.setdefault(f.preset, len(order))
    return sorted(findings, key=lambda f: (order[f.preset], SEVERITY_ORDER[f.severity], f.code))
