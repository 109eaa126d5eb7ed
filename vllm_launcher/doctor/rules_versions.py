"""VL119: the rendered flags against the installed vLLM's release (vllm_launcher.flagtable): a flag that
release lacks fails at start-up (error, with the release that has it); a deprecated one works until it is
removed (warning, with vLLM's own message)."""

from __future__ import annotations

from collections.abc import Iterator

from vllm_launcher.doctor.findings import Facts, Hit


def flags_in_installed_vllm(facts: Facts) -> Iterator[Hit]:
    if not facts.vllm_version:
        return
    from vllm_launcher import flagtable
    from vllm_launcher.plan import vllm_flags

    for verdict in flagtable.check_argv(vllm_flags(facts.preset), facts.vllm_version):
        if verdict.status == "absent":
            yield Hit(f"{verdict.message}: vLLM refuses the unknown flag at start-up",
                      "remove it (extra_args) or install a vLLM that has it; `vllm-launch render NAME "
                      "--vllm-version X` checks a command against another release")
        else:
            yield Hit(verdict.message, "use the replacement it names before the release that removes it",
                      severity="warning")
