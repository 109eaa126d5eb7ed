"""Running the gateway: build its routes and capacity, claim its name and port (a record of kind "gateway":
`status` lists it, `down NAME` stops it and every server it started), serve until SIGINT/SIGTERM, then stop
the servers it started. `--detach` runs the same command in its own session, logging to its log file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vllm_launcher.base import output
from vllm_launcher.base.errors import ConfigError, LaunchError
from vllm_launcher.base.units import GIB
from vllm_launcher.machine import records

if TYPE_CHECKING:
    from collections.abc import Iterator

    from vllm_launcher.gateway.routes import RouteTable
    from vllm_launcher.gateway.schedule import Capacity
    from vllm_launcher.machine.hardware import Hardware
    from vllm_launcher.preset.schema import Preset

TICK_S = 1.0
DRAIN_S = 10.0  # on shutdown, how long requests in flight (streams) may take to end before they are cut


@dataclass
class GatewayConfig:
    name: str = "gateway"
    presets: list[str] = field(default_factory=list)
    upstreams: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 8080
    idle_s: float = 600.0
    api_key_env: str | None = None
    hardware_file: str | None = None
    memory_gib: float | None = None
    gpu_memory_gib: float | None = None
    start_timeout_s: float = 1800.0
    drain_s: float = DRAIN_S
    argv: list[str] = field(default_factory=list)


def label(name: str) -> str:
    """How the gateway names itself: "gateway" for the default name, else "gateway NAME"."""
    return "gateway" if name == "gateway" else f"gateway {name}"


def exposure_problem(host: str, api_key_env: str | None, presets: list[Preset]) -> str | None:
    """Why a gateway on HOST must not run: on an address others can reach, with no key of its own, it would
    send a preset's upstream key (api_key_env) on behalf of anyone who reaches it. None: fine."""
    from vllm_launcher.machine.system import is_loopback

    if api_key_env or is_loopback(host):
        return None
    keyed = [f"{p.name} (api_key_env {p.api_key_env})" for p in presets if p.api_key_env]
    if not keyed:
        return None
    return (f"--host {host} with no --api-key-env would let anyone who reaches it use the key of "
            f"{', '.join(keyed)}: give the gateway its own key (--api-key-env NAME) or bind 127.0.0.1")


def build_routes(config: GatewayConfig, hardware: Hardware) -> tuple[RouteTable, list[str]]:
    """The route table, and notes on presets left out (the default is every preset that fits here)."""
    from vllm_launcher.gateway.routes import build_routes as table_of
    from vllm_launcher.gateway.routes import preset_route, upstream_route
    from vllm_launcher.preset.schema import list_presets, resolve

    routes = [upstream_route(spec) for spec in config.upstreams]
    notes: list[str] = []
    if config.presets:
        for ref in config.presets:
            resolved = resolve(ref)
            routes.append(preset_route(resolved.preset, resolved.source))
    elif not config.upstreams:
        for entry in list_presets():
            if entry.preset is None:
                notes.append(f"{entry.name}: left out (does not load)")
                continue
            why = _does_not_fit(entry.preset, hardware)
            if why:
                notes.append(f"{entry.name}: left out ({why})")
            else:
                routes.append(preset_route(entry.preset, entry.source))
    return table_of(routes), notes


def _does_not_fit(preset: Preset, hardware: Hardware) -> str | None:
    from vllm_launcher.memory.arch import load_arch
    from vllm_launcher.memory.estimate import estimate

    try:
        est = estimate(preset, load_arch(preset.model), hardware)
    except (LaunchError, ValueError, ArithmeticError) as exc:
        return f"its model is unknown here: {exc}"
    return None if est.fits else "does not fit this machine: " + "; ".join(est.reasons)


def capacity_of(config: GatewayConfig, hardware: Hardware) -> Capacity:
    from vllm_launcher.gateway.schedule import Capacity

    gpu = {g.index: int(config.gpu_memory_gib * GIB) if config.gpu_memory_gib else g.total_bytes
           for g in hardware.gpus}
    ram = int(config.memory_gib * GIB) if config.memory_gib else hardware.ram_available_bytes
    return Capacity(gpu, ram)


def gateway_record(config: GatewayConfig, routes: RouteTable, log_path: str) -> records.Record:
    import psutil

    me = psutil.Process()
    created = me.create_time()
    return records.Record(
        name=config.name, kind="gateway", preset="gateway", model="*",
        served_model=", ".join(route.name for route in routes.routes), host=config.host, port=config.port,
        argv=config.argv or [sys.executable, "-m", "vllm_launcher", "gateway"], log_path=log_path,
        device="cpu", mode="detached" if log_path else "foreground", state=records.STARTING.value,
        supervisor_pid=me.pid, supervisor_create_time=created, server_pid=me.pid, server_create_time=created,
        pgid=os.getpgid(me.pid),
        tree=[[me.pid, created]], started_at=time.time(), created_at=time.time(), restart_policy="never")


def run(config: GatewayConfig, log_path: str = "") -> int:
    """Serve in this process until SIGINT or SIGTERM; 0 after a clean stop."""
    from vllm_launcher.machine import hardware as hardware_mod
    from vllm_launcher.supervise import claim, preflight

    hardware = (hardware_mod.load_hardware(config.hardware_file) if config.hardware_file
                else hardware_mod.probe())
    table, notes = build_routes(config, hardware)
    for note in notes:
        output.err(f"vllm-launch: gateway: {note}")
    exposed = exposure_problem(config.host, config.api_key_env,
                               [r.preset for r in table.routes if r.preset is not None])
    if exposed:
        raise ConfigError(exposed, source="--host")
    unwritable = preflight.state_dirs_problem()
    if unwritable:
        raise LaunchError(f"not starting the gateway: {unwritable}")
    from vllm_launcher.machine import system

    verdict = system.port_check(config.host, config.port)
    if verdict == system.PORT_NOT_LOCAL:
        raise ConfigError(f"host {config.host} is not an address of this machine", source="--host")
    if verdict == system.PORT_IN_USE:
        owner = system.port_owner(config.port)
        raise LaunchError(f"port {config.port} on {config.host} is already in use"
                          + (f" by {owner}" if owner else "") + ": pick another --port")
    record = gateway_record(config, table, log_path)
    claim.claim(record)
    try:
        with _event_loop() as loop:
            return loop.run_until_complete(_serve(config, table, hardware, record))
    finally:
        records.delete(record.name)


@contextlib.contextmanager
def _event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop: asyncio.AbstractEventLoop
    try:  # uvloop when installed: a faster loop for a proxy
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


async def _serve(config: GatewayConfig, table: RouteTable, hardware: Hardware, record: records.Record) -> int:
    from aiohttp import web

    from vllm_launcher.gateway.backends import Fleet, FleetOptions
    from vllm_launcher.gateway.metrics import Metrics
    from vllm_launcher.gateway.proxy import drain, make_app

    def log(text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}", flush=True)

    api_key = None
    if config.api_key_env:
        api_key = os.environ.get(config.api_key_env)
        if not api_key:
            raise LaunchError(f"--api-key-env {config.api_key_env}: the variable is not set")
    metrics = Metrics()
    options = FleetOptions(name=config.name, idle_s=config.idle_s, start_timeout_s=config.start_timeout_s,
                           hardware_file=config.hardware_file)
    fleet = Fleet(table, hardware, capacity_of(config, hardware), options, metrics, log)
    fleet.adopt_running()
    app = make_app(fleet, metrics, api_key, log)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, config.host, config.port).start()
        record.state = records.READY.value
        record.ready_at = time.time()
        records.write(record)
        log(f"{label(config.name)} on {record.base_url} for "
            + ", ".join(f"{r.name} ({', '.join(r.names)})" for r in table.routes))
        for line in client_lines(record, config.api_key_env):
            with contextlib.suppress(OSError, ValueError):
                print(line, flush=True)
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_S)
            await fleet.tick()
        options.stop_timeout_s = records.requested_stop_timeout(config.name, options.stop_timeout_s)
        fleet.closing = True  # new requests get 503 from now on
        await drain(app, min(config.drain_s, options.stop_timeout_s / 2), lambda text: log(
            f"{label(config.name)}: {text}"))
        log(f"{label(config.name)}: stopping the servers it started")
        await fleet.shutdown()
    finally:
        await runner.cleanup()
    log(f"{label(config.name)}: stopped")
    return 0


# ------------------------------------------------------------------------------------------ detached


def start_detached(config: GatewayConfig, argv: list[str]) -> output.Result:
    """The same `gateway` command in its own session, logging to its log file; returns once it listens."""
    log_path = records.log_path_for(config.name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as handle:
        command = [sys.executable, "-m", "vllm_launcher", *argv, "--log-file", str(log_path)]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                   start_new_session=True, close_fds=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        record = records.read(config.name)
        if record is not None and record.state == records.READY and record.server_pid == process.pid:
            return output.Result(text=gateway_text(record, config.api_key_env))
        if process.poll() is not None:
            from vllm_launcher.supervise import readiness

            tail = " | ".join(readiness.tail_lines(log_path, 5))
            return output.Result(errors=[f"the gateway exited ({process.returncode}): {tail}"], code=1)
        time.sleep(0.05)
    return output.Result(errors=[f"the gateway did not start listening within 120 s (log: {log_path})"],
                         code=1)


def gateway_text(record: records.Record, key_env: str | None = None) -> str:
    return "\n".join([
        f"{label(record.name)} is ready",
        f"  endpoint:      {record.endpoint}",
        f"  OpenAI base:   {record.base_url}",
        f"  models:        {record.served_model}",
        f"  log:           {record.log_path or '(this terminal)'}",
        *client_lines(record, key_env),
    ])


def client_lines(record: records.Record, key_env: str | None = None) -> list[str]:
    """How clients reach this gateway: the agent's profiles.yaml entry, the OpenAI SDK's and Anthropic's
    (Claude Code's) environment, the key by reference to the user's variable, never its value; and how to
    stop it."""
    import shlex

    from vllm_launcher.clients.agent_profile import gateway_entry, profile_yaml, sdk_env_lines

    profile = profile_yaml(gateway_entry(record.base_url))
    token = f'"${key_env}"' if key_env else "any  # this gateway checks no key"
    return [
        "profiles.yaml entry for the client:",
        *("  " + line for line in profile.splitlines()),
        "OpenAI SDK environment:",
        *sdk_env_lines(record.base_url, key_env),
        "Anthropic SDK / Claude Code environment (no /v1):",
        f"  export ANTHROPIC_BASE_URL={shlex.quote(record.endpoint)}",
        f"  export ANTHROPIC_AUTH_TOKEN={token}",
        f"stop it (and the servers it started) with: vllm-launch down {record.name}",
    ]
