"""VL119: the rendered flags against a vLLM release (vllm_launcher.preset.flagtable): the target of `doctor
--vllm-version X`, else the installed one. A flag that release lacks fails at start-up (error, with the
release that has it); a deprecated one works until it is removed (warning, with vLLM's own message)."""

from __future__ import annotations

from collections.abc import Iterator

from vllm_launcher.doctor.findings import Facts, Hit


def flags_in_installed_vllm(facts: Facts) -> Iterator[Hit]:
    version = facts.target_vllm_version or facts.vllm_version
    if not version:
        return
    from vllm_launcher.preset import flagtable
    from vllm_launcher.preset.plan import vllm_flags

    target = facts.target_vllm_version is not None
    for verdict in flagtable.check_argv(vllm_flags(facts.preset), version):
        if verdict.status == "absent":
            if target:
                yield Hit(f"{verdict.message}: vLLM {version} refuses the unknown flag at start-up",
                          f"remove it (extra_args) for vLLM {version}, or target a release that has it")
            else:
                yield Hit(f"{verdict.message}: vLLM refuses the unknown flag at start-up",
                          "remove it (extra_args) or install a vLLM that has it; `vllm-launch doctor NAME "
                          "--vllm-version X` checks the preset against another release")
        else:
            yield Hit(verdict.message, "use the replacement it names before the release that removes it",
                      severity="warning")
