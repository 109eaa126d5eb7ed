"""What doctor reports: `Finding` values and the registry of rules that produce them.

Every check has a stable code (`VL1xx` preset, `VL2xx` memory/fit, `VL3xx` environment, `VL4xx` live
server, `VL5xx` log explanation), a default severity and a one-line title. Static rules are plain
functions `Facts -> Hit | list[Hit] | None`, registered with `@rule(...)`; live checks and log
explanations register their codes with `register(...)` and build findings with `make_finding`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

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

    preset: a `Preset` (or a `Preset.model_construct` for raw values); arch: `ModelArch | None`;
    hardware: `Hardware | None`; estimate: `Estimate | None`; env: the environment vLLM would inherit
    (os env + the preset's env); vllm_version: installed version string or None when not installed;
    tool_parsers: the installed vLLM's parser names (None: unknown); cpu_flags: /proc/cpuinfo flags
    (None: unknown); local: the hardware is this machine (ports, /dev/shm, installs can be looked at).
    """

    preset: Any
    arch: Any = None
    arch_error: str | None = None  # why the architecture could not be loaded (arch is None)
    hardware: Any = None
    estimate: Any = None
    env: dict[str, str] = field(default_factory=dict)
    vllm_distribution: str | None = None
    vllm_version: str | None = None
    vllm_checked: bool = False  # False: we could not look (another interpreter, a remote machine)
    tool_parsers: frozenset[str] | None = None
    cpu_flags: frozenset[str] | None = None
    local: bool = True
    port_owner: Any = None  # PortOwner | None, looked up at the edge
    port_error: str | None = None  # the host:port could not be tried (the host is not an address here)
    managed_running: bool = False  # a managed server of this preset is up (its port is ours)


RuleFunc = Callable[[Facts], "Hit | Iterable[Hit] | None"]


@dataclass(frozen=True)
class Rule:
    code: str
    severity: Severity
    scope: Scope
    title: str
    func: RuleFunc | None = None


REGISTRY: dict[str, Rule] = {}


def register(code: str, severity: Severity, scope: Scope, title: str, func: RuleFunc | None = None) -> Rule:
    """Add a rule to the registry; a code may be registered once (codes are stable identifiers)."""
    if code in REGISTRY:
        raise ValueError(f"rule code {code} registered twice")
    REGISTRY[code] = Rule(code=code, severity=severity, scope=scope, title=title, func=func)
    return REGISTRY[code]


def rule(code: str, severity: Severity, title: str, scope: Scope = "preset") -> Callable[[RuleFunc], RuleFunc]:
    """Decorator: register a static rule function under `code`."""

    def decorate(func: RuleFunc) -> RuleFunc:
        register(code, severity, scope, title, func)
        return func

    return decorate


def make_finding(code: str, message: str, fix: str = "", *, preset: str | None = None,
                 severity: Severity | None = None) -> Finding:
    """A finding for a registered code, with the rule's default severity unless one is given."""
    registered = REGISTRY.get(code) or load_all_rules()[code]  # its module may not be imported yet
    return Finding(code=code, severity=severity or registered.severity, preset=preset, message=message,
                   fix=fix)


def run_rule(registered: Rule, facts: Facts, preset_name: str | None) -> list[Finding]:
    """Call one rule function and turn its hits into findings."""
    if registered.func is None:
        return []
    result = registered.func(facts)
    if result is None:
        return []
    hits = [result] if isinstance(result, Hit) else list(result)
    return [make_finding(registered.code, hit.message, hit.fix, preset=preset_name, severity=hit.severity)
            for hit in hits]


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Machine findings first, then presets in the order seen; inside a group: errors, warnings, info."""
    findings = list(findings)
    order: dict[str | None, int] = {None: -1}
    for f in findings:
        order.setdefault(f.preset, len(order))
    return sorted(findings, key=lambda f: (order[f.preset], SEVERITY_ORDER[f.severity], f.code))


def load_all_rules() -> dict[str, Rule]:
    """Import every module that registers rules; returns the registry sorted by code."""
    from vllm_launcher.doctor import (  # noqa: F401
        live,
        logs,
        rules_env,
        rules_load,
        rules_memory,
        rules_multinode,
        rules_preset,
        rules_speed,
    )

    return dict(sorted(REGISTRY.items()))
