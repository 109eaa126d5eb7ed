"""`gateway`: one OpenAI-compatible endpoint in front of presets (vllm_launcher.gateway)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from vllm_launcher.base.errors import ConfigError
from vllm_launcher.base.inputs import check_number, check_server_name, parse_duration
from vllm_launcher.base.output import Result

if TYPE_CHECKING:
    from vllm_launcher.clients.agent_profile import ProfileWrite
    from vllm_launcher.gateway.service import GatewayConfig


def gateway(presets: list[str] | None = None, name: str = "gateway", host: str = "127.0.0.1",
            port: int = 8080, idle: str = "10m", detach: bool = False, api_key_env: str | None = None,
            upstream: list[str] | None = None, hardware_file: str | None = None,
            memory_gib: float | None = None,
            gpu_memory_gib: float | None = None, start_timeout: str = "30m", render: str | None = None,
            output_dir: str | None = None, client_config: str | None = None,
            log_file: str | None = None, drain: str = "10s") -> Result:
    """Serve PRESETS (default: every preset that fits this machine) behind one endpoint."""
    from vllm_launcher.base.safe_text import check_host
    from vllm_launcher.clients.agent_profile import write_profile
    from vllm_launcher.gateway.service import GatewayConfig, run, start_detached

    check_server_name("--name", name)
    check_number("--port", port, low=1, high=65535)
    check_number("--memory-gib", memory_gib, low=0, high=1 << 24, low_inclusive=False)
    check_number("--gpu-memory-gib", gpu_memory_gib, low=0, high=1 << 16, low_inclusive=False)
    try:
        check_host(host)
        idle_s = parse_duration(idle, "--idle")
        start_s = parse_duration(start_timeout, "--start-timeout")
        drain_s = parse_duration(drain, "--drain")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    import re

    from vllm_launcher.preset.schema import ENV_NAME

    if api_key_env is not None and not re.fullmatch(ENV_NAME, api_key_env):
        raise ConfigError(f"{api_key_env!r} is not an environment variable name", source="--api-key-env")
    argv = _argv(presets or [], name, host, port, idle, api_key_env, upstream or [], hardware_file,
                 memory_gib, gpu_memory_gib, start_timeout, drain)
    config = GatewayConfig(name=name, presets=list(presets or []), upstreams=list(upstream or []), host=host,
                           port=port, idle_s=idle_s, api_key_env=api_key_env, hardware_file=hardware_file,
                           memory_gib=memory_gib, gpu_memory_gib=gpu_memory_gib, start_timeout_s=start_s,
                           drain_s=drain_s, argv=[sys.executable, "-m", "vllm_launcher", *argv])
    if render is not None:
        if client_config is not None:
            raise ConfigError("--client-config points a client at a running gateway; --render starts none",
                              source="--client-config")
        return _render(render, config, output_dir)
    profile = _client_profile(client_config, host, port)
    _check_exposure(host, api_key_env, presets or [])
    if detach:
        started = start_detached(config, argv)
        if profile is not None and started.code == 0:  # once it listens: a failed start leaves the file alone
            write_profile(profile)
        return started
    if profile is not None:  # in the foreground the gateway runs until stopped: written as it starts
        write_profile(profile)
    return Result(code=run(config, log_path=log_file or ""))


def _check_exposure(host: str, api_key_env: str | None, presets: list[str]) -> None:
    """The named presets' upstream keys on a reachable address with no gateway key: refused before anything
    starts (the gateway checks again, for every preset it serves)."""
    from vllm_launcher.gateway.service import exposure_problem
    from vllm_launcher.preset.schema import resolve

    problem = exposure_problem(host, api_key_env, [resolve(ref).preset for ref in presets])
    if problem:
        raise ConfigError(problem, source="--host")


def _client_profile(path: str | None, host: str, port: int) -> ProfileWrite | None:
    """The agent's `vllm:` profile pointing at the gateway, checked before the gateway starts."""
    if path is None:
        return None
    from vllm_launcher.clients.agent_profile import gateway_entry, prepare_profile
    from vllm_launcher.machine.records import endpoint_url

    return prepare_profile(path, gateway_entry(endpoint_url(host, port) + "/v1"))


def _argv(presets: list[str], name: str, host: str, port: int, idle: str, api_key_env: str | None,
          upstream: list[str], hardware_file: str | None, memory_gib: float | None,
          gpu_memory_gib: float | None,
          start_timeout: str, drain: str = "10s") -> list[str]:
    """The `gateway` command line that runs this gateway (the detached daemon's and the unit's)."""
    argv = ["gateway", *presets, "--name", name, "--host", host, "--port", str(port), "--idle", str(idle),
            "--start-timeout", str(start_timeout), "--drain", str(drain)]
    for flag, value in (("--api-key-env", api_key_env), ("--hardware", hardware_file),
                        ("--memory-gib", memory_gib), ("--gpu-memory-gib", gpu_memory_gib)):
        if value is not None:
            argv += [flag, str(value)]
    for spec in upstream:
        argv += ["--upstream", spec]
    return argv


def _render(fmt: str, config: GatewayConfig, output_dir: str | None) -> Result:
    from vllm_launcher.exporters import as_text, write_files
    from vllm_launcher.exporters.systemd import gateway_unit

    if fmt != "systemd":
        raise ConfigError(f"the gateway renders only as systemd, not {fmt!r}", source="--render")
    files = gateway_unit(config.name, config.argv, None, None, bool(config.api_key_env))
    if output_dir:
        return Result(text="\n".join(f"wrote {path}" for path in write_files(files, output_dir)))
    return Result(text=as_text(files).rstrip("\n"))
