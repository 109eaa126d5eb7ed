"""Doctor's edge: build `Facts` for each preset (model architecture, hardware, estimate, installed vLLM, port
owner), run the registered rules, add live checks and log explanations. Returns plain `Finding` lists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vllm_launcher.base.errors import ConfigError, LaunchError
from vllm_launcher.doctor import registry
from vllm_launcher.doctor.findings import Facts, Finding, run_rule, sort_findings
from vllm_launcher.machine import system

if TYPE_CHECKING:
    from vllm_launcher.doctor.environment import EnvFacts
    from vllm_launcher.machine.hardware import Hardware
    from vllm_launcher.machine.records import Record
    from vllm_launcher.memory.arch import ModelArch
    from vllm_launcher.preset.schema import Preset


def _arch_for(model: str) -> ModelArch:
    from vllm_launcher.memory.arch import load_arch

    return load_arch(model)


def preset_facts(preset: Preset, hardware: Hardware | None, *, local: bool = True,
                 managed_running: bool = False) -> Facts:
    """Facts for one preset (what could not be looked at is None; arch_error says why for the model)."""
    from vllm_launcher.doctor import environment

    arch = arch_error = None
    try:
        arch = _arch_for(preset.model)
    except (LaunchError, ConfigError, OSError, ValueError) as exc:
        arch_error = str(exc)
    estimate = None
    if arch is not None and hardware is not None:
        try:
            from vllm_launcher.memory.estimate import estimate as run_estimate

            estimate = run_estimate(preset, arch, hardware)
        except (LaunchError, ValueError, ZeroDivisionError, ArithmeticError):
            estimate = None
    env = {**os.environ, **preset.env} if local else dict(preset.env)
    if local:
        info = system.vllm_info(preset.python, env)
    else:
        vllm = getattr(hardware, "vllm", None)
        info = system.VllmInfo(vllm.distribution if vllm else None, vllm.version if vllm else None,
                               None, checked=vllm is not None)
    parsers = environment.tool_parsers(info.package_dir) if info.package_dir else None
    port_owner = port_error = None
    if local:
        try:
            port_owner = environment.port_owner(preset.host, preset.port)
        except OSError as exc:  # the host is not an address of this machine (VL309), not a crash
            port_error = exc.strerror or str(exc)
    facts = Facts(preset=preset, arch=arch, arch_error=arch_error, hardware=hardware, estimate=estimate,
                  env=env, vllm_distribution=info.distribution, vllm_version=info.version,
                  vllm_checked=info.checked, vllm_package_dir=info.package_dir, vllm_problem=info.problem,
                  tool_parsers=parsers, cpu_flags=_cpu_flags(hardware, local), local=local,
                  port_owner=port_owner, port_error=port_error, managed_running=managed_running)
    return facts


def _cpu_flags(hardware: Hardware | None, local: bool) -> frozenset[str] | None:
    """This machine's flags when it is the one checked; else the (saved or hypothetical) probe's."""
    from vllm_launcher.doctor import environment

    if local:
        return environment.cpu_flags()
    flags = getattr(hardware, "cpu_flags", None)
    return frozenset(flags) if flags is not None else None


def check_facts(facts: Facts, preset_name: str | None) -> list[Finding]:
    """Run every preset-scope rule on prepared facts (pure: used directly by tests)."""
    findings: list[Finding] = []
    for rule in registry.static_rules("preset"):
        findings.extend(run_rule(rule, facts, preset_name))
    return findings


def check_preset(preset: Preset, hardware: Hardware | None, *, local: bool = True,
                 managed_running: bool = False, vllm_version: str | None = None) -> list[Finding]:
    """Every preset-scope rule on PRESET; VLLM_VERSION: check the flags against that release (VL119)."""
    facts = preset_facts(preset, hardware, local=local, managed_running=managed_running)
    facts.target_vllm_version = vllm_version
    return check_facts(facts, preset.name)


def check_environment(env_facts: EnvFacts | None = None) -> list[Finding]:
    """Machine-wide findings (vLLM install, torchvision, the `vllm` script, /dev/shm, stale records)."""
    from vllm_launcher.doctor.environment import gather_environment

    env_facts = env_facts if env_facts is not None else gather_environment()
    findings: list[Finding] = []
    for rule in registry.static_rules("environment"):
        findings.extend(run_rule(rule, env_facts, None))
    return findings


def _hardware(hardware_file: str | None) -> tuple[Hardware, bool]:
    from vllm_launcher.machine import hardware

    if hardware_file:
        return hardware.load_hardware(hardware_file), False
    return hardware.probe(), True


# vLLM's log of one start is well under a megabyte; a long-running server's grows. The end explains it.
MAX_LOG_BYTES = 64 << 20


def _read_log(path: str) -> str:
    from vllm_launcher.base.files import read_user_file

    return read_user_file(path, max_bytes=MAX_LOG_BYTES, tail=True, what="cannot read log",
                          missing="no such log file")


def run_doctor(names: list[str], *, hardware_file: str | None = None, endpoint: str | None = None,
               log_file: str | None = None, overrides: list | None = None,
               tools: ToolOptions | None = None, vllm_version: str | None = None) -> list[Finding]:
    """The whole `vllm-launch doctor` run. No names and no endpoint/log: every preset plus the environment.
    VLLM_VERSION: the presets' flags are checked against that release instead of the installed one."""
    from vllm_launcher.doctor.logs import explain_log

    if vllm_version is not None:
        from vllm_launcher.preset.flagtable import target_release

        target_release(vllm_version)  # not a version, or outside the table: a usage error (exit 2)

    if endpoint:
        from vllm_launcher.doctor.live import check_endpoint_url

        check_endpoint_url(endpoint)  # a malformed URL is a usage error (exit 2), not an unreachable server
    only_live = bool(endpoint or log_file) and not names
    findings: list[Finding] = []
    servers: dict[str, Record] = {}
    if names:
        presets = _named_presets(names, overrides, servers, look_for_servers=not hardware_file)
    elif only_live:
        presets = []
    else:
        presets, findings = _every_preset(overrides)
    if presets:
        hardware, local = _hardware(hardware_file)
        for preset in presets:
            findings.extend(_check_one(preset, hardware, local, servers.get(preset.name), endpoint, tools,
                                       vllm_version))
    if not names and not only_live:
        findings.extend(check_environment())
    single = presets[0] if len(presets) == 1 else None
    if endpoint:
        findings.extend(check_live(endpoint, single, tools))
    if log_file:
        findings.extend(explain_log(_read_log(log_file), preset=single.name if single else None))
    return sort_findings(findings)


def _named_presets(names: list[str], overrides: list | None, servers: dict[str, Record], *,
                   look_for_servers: bool) -> list[Preset]:
    """The presets NAMES stands for (a preset, a path, or a managed server's name); SERVERS gets the running
    server of each that has one. Raises ConfigError for a bad name or file (exit 2)."""
    from vllm_launcher.doctor import environment
    from vllm_launcher.preset.schema import resolve

    presets = []
    for name in names:
        record = environment.managed_record(name) if look_for_servers else None
        ref = record.preset_source or record.preset if record is not None and not _is_preset(name) else name
        preset = resolve(ref, overrides).preset
        if record is not None:
            # `up` may have overridden where it listens: check the server that runs.
            preset = preset.model_copy(update={"host": record.host, "port": record.port})
            servers[preset.name] = record
        presets.append(preset)
    return presets


def _every_preset(overrides: list | None) -> tuple[list[Preset], list[Finding]]:
    """Every preset that loads, and a VL100 finding for each that does not."""
    from vllm_launcher.preset.schema import list_presets, resolve

    presets, broken = [], []
    for entry in list_presets():
        if entry.preset is None:
            broken.append(registry.PRESET_DOES_NOT_LOAD.finding(
                entry.error or "invalid preset", f"fix {entry.source} (vllm-launch show {entry.name})",
                preset=entry.name))
        else:
            presets.append(entry.preset)
    if overrides:
        presets = [resolve(p.name, overrides).preset for p in presets]
    return presets, broken


def _check_one(preset: Preset, hardware: Hardware, local: bool, server: Record | None,
               endpoint: str | None, tools: ToolOptions | None = None,
               vllm_version: str | None = None) -> list[Finding]:
    """A preset's static findings; for a running managed server also its live checks and its log."""
    from vllm_launcher.doctor.logs import explain_log

    findings = check_preset(preset, hardware, local=local, managed_running=server is not None,
                            vllm_version=vllm_version)
    if server is not None:
        findings.extend(_check_managed(preset, server, endpoint, tools))
        if Path(server.log_path).is_file():
            findings.extend(explain_log(_read_log(server.log_path), preset=preset.name))
    return findings


def _is_preset(name: str) -> bool:
    from vllm_launcher.preset.schema import find_preset

    try:
        find_preset(name)
    except ConfigError:
        return False
    return True


@dataclass(frozen=True)
class ToolOptions:
    """`doctor --tools [--client-prompt-tokens N]`: the tool-calling conformance checks too."""

    enabled: bool = False
    client_prompt_tokens: int | None = None


def check_live(endpoint: str, preset: Preset | None = None,
               tools: ToolOptions | None = None) -> list[Finding]:
    """Live checks against `endpoint`, with the preset's expectations and API key when one is given; with
    TOOLS enabled, the tool-calling conformance checks (doctor.tools) too."""
    from vllm_launcher.doctor.live import Expectations, fetch, judge
    from vllm_launcher.preset.plan import served_model_name

    probe = not (tools and tools.enabled)  # the conformance checks replace the single tool probe
    if preset is None:
        api_key = os.environ.get("VLLM_API_KEY") or None
        expect = Expectations()
    else:
        api_key = os.environ.get(preset.api_key_env) if preset.api_key_env else None
        expect = Expectations(preset.name, preset.served_model_name or preset.model, preset.max_model_len,
                              preset.tool_calling.parser)
    exchanges = fetch(endpoint, expect, api_key=api_key, tool_probe=probe)
    findings = judge(exchanges, expect)
    if tools and tools.enabled:
        # Without a preset, the model the live checks found listed (None: they already say why).
        model = served_model_name(preset) if preset else exchanges.model
        if model is not None:
            findings.extend(_check_tools(endpoint, model, preset, tools, api_key))
    return findings


def _check_tools(endpoint: str, model: str, preset: Preset | None, tools: ToolOptions,
                 api_key: str | None) -> list[Finding]:
    from vllm_launcher.doctor import tools as conformance

    prompt = tools.client_prompt_tokens or (preset.client_prompt_tokens if preset else None)
    return conformance.run_checks(endpoint, model, api_key=api_key,
                                  parser=preset.tool_calling.parser if preset else None,
                                  client_prompt_tokens=prompt, preset=preset.name if preset else None)


def _check_managed(preset: Preset, record: Record, endpoint: str | None,
                   tools: ToolOptions | None = None) -> list[Finding]:
    if endpoint:
        return []  # the explicit endpoint is checked instead
    return check_live(record.endpoint, preset, tools)
