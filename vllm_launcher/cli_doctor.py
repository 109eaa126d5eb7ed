"""`vllm-launch doctor` (registered on the app from cli.py).

`doctor` alone: every preset plus the environment; `doctor NAME...`: those presets (and, for a running
managed server, live checks and its log); `--endpoint URL`: live checks of any server; `--log FILE`: explain
a vLLM log; `--list`: the rules. Exit 1 when any error is found, else 0; 2 for bad input.
The logic lives in `doctor_main` (no typer), so a fast path can call it directly.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from vllm_launcher import output
from vllm_launcher.cli import JsonOpt, app, with_overrides
from vllm_launcher.errors import EXIT_FAILURE

SEVERITY_LABEL = {"error": "ERROR", "warning": "WARN ", "info": "info "}


def group_label(finding, *, log_file: str | None = None, endpoint: str | None = None) -> str:
    """The heading a finding is listed under: its preset, else what was checked (the machine, a log, a URL)."""
    if finding.preset:
        return finding.preset
    from vllm_launcher.doctor.findings import REGISTRY

    registered = REGISTRY.get(finding.code)
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
    from vllm_launcher.doctor.findings import load_all_rules

    rows = [[r.code, r.severity, r.scope, r.title] for r in load_all_rules().values()]
    return output.table(["CODE", "SEVERITY", "SCOPE", "CHECK"], rows)


def doctor_main(names: list[str], *, as_json: bool = False, list_rules: bool = False,
                hardware_file: str | None = None, endpoint: str | None = None, log_file: str | None = None,
                overrides: list | None = None) -> int:
    """Run doctor and print the report; returns the exit code (1 when any error was found)."""
    if list_rules:
        if as_json:
            from vllm_launcher.doctor.findings import load_all_rules

            output.print_json({"rules": [{"code": r.code, "severity": r.severity, "scope": r.scope,
                                          "title": r.title} for r in load_all_rules().values()]})
        else:
            output.out(format_rules())
        return 0
    from vllm_launcher.doctor.engine import run_doctor
    from vllm_launcher.doctor.findings import has_errors

    findings = run_doctor(names, hardware_file=hardware_file, endpoint=endpoint, log_file=log_file,
                          overrides=overrides)
    if as_json:
        output.print_json({"findings": [f.model_dump() for f in findings]})
    else:
        output.out(format_report(findings, log_file=log_file, endpoint=endpoint))
    return EXIT_FAILURE if has_errors(findings) else 0


@app.command("doctor")
@with_overrides
def doctor_command(
    names: Annotated[Optional[list[str]], typer.Argument(  # noqa: UP045
        metavar="[PRESET]...", help="Presets (names or YAML paths); none: every preset plus the environment.",
        show_default=False)] = None,
    hardware_file: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--hardware", help="Check against a probe saved with `vllm-launch probe --json > FILE`.")] = None,
    endpoint: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--endpoint", help="Live checks of a running server, e.g. http://127.0.0.1:8000.")] = None,
    log_file: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--log", help="Explain the known vLLM errors in a log file.")] = None,
    list_rules: Annotated[bool, typer.Option("--list", help="List the checks and their codes.")] = False,
    as_json: JsonOpt = False,
    overrides: list | None = None,
) -> None:
    """Check presets, the environment, a running server or a vLLM log; say how to fix each problem."""
    raise typer.Exit(doctor_main(names or [], as_json=as_json, list_rules=list_rules,
                                 hardware_file=hardware_file, endpoint=endpoint, log_file=log_file,
                                 overrides=overrides or None))
