"""vLLM's start-up error texts → a plain cause and fix: the supervisor's view of doctor's one table.

The patterns, their numbers and whether an error recurs on restart live in `vllm_launcher.doctor.logs`
(codes VL5xx). This adapter keeps the supervisor's `Diagnosis` type; `code` is the pattern's short name
(as stored in state records), `rule` its doctor code. doctor.logs is imported only when a start has
failed: it pulls pydantic, which the small background supervisor does not need while it just watches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnosis:
    code: str
    cause: str
    fix: str
    recurring: bool = True  # comes back on every restart: report it instead of restarting
    line: str = ""  # the log line that matched
    rule: str = ""  # doctor's code (VL5xx), the same `vllm-launch doctor --log` reports

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "rule": self.rule, "cause": self.cause, "fix": self.fix, "line": self.line}


def diagnose(lines: list[str]) -> Diagnosis | None:
    """The root cause of a failed start in LINES (doctor.logs.first_error), or None when no known error."""
    from vllm_launcher.doctor.logs import first_error

    hit = first_error("\n".join(lines))
    if hit is None:
        return None
    return Diagnosis(hit.pattern.name, hit.cause, hit.fix, hit.pattern.recurring, hit.line[:500],
                     hit.pattern.code)


def last_error_line(lines: list[str]) -> str:
    """The last line that looks like an exception (`SomeError: ...`), for unknown failures."""
    for line in reversed(lines):
        if re.search(r"\b\w*(Error|Exception)\b:", line):
            return line.strip()[:300]
    return ""
