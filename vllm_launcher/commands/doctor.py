"""`doctor`: presets, the environment, a running server or a vLLM log, checked; each problem with its fix.

`doctor` alone: every preset plus the environment; `doctor NAME...`: those presets (and, for a running
managed server, live checks and its log); `--endpoint URL`: live checks of any server; `--log FILE`: explain
a vLLM log; `--list`: the rules. Exit 1 when any error is found, else 0; 2 for bad input.
"""

from __future__ import annotations

from vllm_launcher.base.errors import EXIT_FAILURE
from vllm_launcher.base.output import Result, table

SEVERITY_LABEL = {"error": "ERROR", "warning": "WARN ", "info": "info "}


def group_label(finding, *, log_file: str | None = None, endpoint: str | None = None) -> str:
    """The heading a finding is listed under: its preset, else what was checked (the machine, a log,
    a URL)."""
    if finding.preset:
        return finding.preset
    from vllm_launcher.doctor.registry import rule_for

    registered = rule_for(finding.code)
    scope = registered.scope if registered else "environment"
    if scope == "log":
        return f"log {log_file}" if log_file else "log"
    if scope == "live":
        return f"endpoint {endpoint}" if endpoint else "endpoint"
    return "environment"


def format_report(findings: list, *, log_file: str | None = None, endpoint: str | None = None) -> str:
    """Plain text, grouped by preset (machine-wide findings first, then a log, then an endpoint), errors first
    inside a group."""
    if not findings:
        return "no problems found"
    groups: dict[str, list] = {}
    for f in findings:  # findings come sorted; a group keeps that order
        groups.setdefault(group_label(f, log_file=log_file, endpoint=endpoint), []).append(f)
    lines: list[str] = []
    for label, members in groups.items():
        if lines:
            lines.append("")
        lines.append(f"== {label}")
        for f in members:
            lines.append(f"  {SEVERITY_LABEL[f.severity]} {f.code}  {f.message}")
            if f.fix:
                lines.append(f"               fix: {f.fix}")
    counts = {s: sum(1 for f in findings if f.severity == s) for s in ("error", "warning", "info")}
    lines += ["", f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info"]
    return "\n".join(lines)


def format_rules() -> str:
    from vllm_launcher.doctor.registry import all_rules

    rows = [[r.code, r.severity, r.scope, r.title] for r in all_rules()]
    return table(["CODE", "SEVERITY", "SCOPE", "CHECK"], rows)


def doctor(names: list[str] | None = None, hardware_file: str | None = None, endpoint: str | None = None,
           log_file: str | None = None, list_rules: bool = False, as_json: bool = False,
           overrides: list | None = None, tools: bool = False,
           client_prompt_tokens: int | None = None, vllm_version: str | None = None) -> Result:
    """Run doctor; exit 1 when any error was found. VLLM_VERSION: the presets' flags are checked against
    that release (as `render --vllm-version`) instead of the installed vLLM."""
    if list_rules:
        from vllm_launcher.doctor.registry import all_rules

        data = {"rules": [{"code": r.code, "severity": r.severity, "scope": r.scope, "title": r.title}
                          for r in all_rules()]}
        return Result(text=format_rules(), data=data, as_json=as_json)
    from vllm_launcher.base.errors import ConfigError
    from vllm_launcher.doctor.engine import ToolOptions, run_doctor
    from vllm_launcher.doctor.findings import has_errors
    from vllm_launcher.doctor.tools import MAX_PROMPT_TOKENS

    if client_prompt_tokens is not None and (not 1 <= client_prompt_tokens <= MAX_PROMPT_TOKENS or not tools):
        raise ConfigError(f"--client-prompt-tokens must be 1 to {MAX_PROMPT_TOKENS:,} tokens, given with "
                          "--tools")
    findings = run_doctor(names or [], hardware_file=hardware_file, endpoint=endpoint, log_file=log_file,
                          overrides=overrides or None,
                          tools=ToolOptions(tools, client_prompt_tokens) if tools else None,
                          vllm_version=vllm_version)
    report: dict[str, object] = {"findings": [f.model_dump() for f in findings]}
    if vllm_version is not None:
        report["vllm_version"] = vllm_version
    return Result(text=format_report(findings, log_file=log_file, endpoint=endpoint),
                  data=report, as_json=as_json,
                  code=EXIT_FAILURE if has_errors(findings) else 0)
