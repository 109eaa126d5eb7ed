"""The servers behind the gateway: started on the first request through the same supervisor as `up`
(pre-flight, claim, detached supervisor, record, log: `status`, `logs` and `down` see them), put to sleep
or stopped when idle or when another model needs the room, woken on the next request.

One `Fleet` per gateway, on the gateway's event loop. Blocking steps (the pre-flight, spawning, stopping a
tree) run in threads; every scheduling decision is taken under one lock, so two requests never both
decide to evict or start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vllm_launcher.base.errors import LaunchError
from vllm_launcher.base.units import GIB
from vllm_launcher.gateway.routes import Route, RouteTable
from vllm_launcher.gateway.schedule import Capacity, Decision, Loaded, Need, place_on_gpus, plan_start
from vllm_launcher.machine import records

if TYPE_CHECKING:
    import subprocess

    from vllm_launcher.machine.hardware import Hardware
    from vllm_launcher.preset.schema import Preset

# A model that failed to start answers 503 with its diagnosis for this long, instead of starting again on
# every request (a config error would fail the same way).
FAILURE_COOLDOWN_S = 60.0
# Host RAM of a GPU server's processes (API server, engine), besides what the GPU holds.
GPU_SERVER_RAM_BYTES = 2 * GIB
POLL_S = 0.025  # the record, while a server starts: a small file, read 40 times a second

STOPPED, STARTING, RUNNING, SLEEPING, FAILED = "stopped", "starting", "running", "sleeping", "failed"
# Being stopped (idle, making room, shutdown): set under the lock before the stop begins, so that no request
# is forwarded into a dying server; requests for it wait until the stop ends, then start it afresh.
STOPPING = "stopping"


class GatewayError(Exception):
    """A request the gateway answers itself: HTTP status, OpenAI error type, message."""

    def __init__(self, status: int, message: str, kind: str = "server_error",
                 retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.retry_after_s = retry_after_s  # sent as Retry-After


@dataclass
class Backend:
    """One route's server as the gateway sees it."""

    route: Route
    state: str = STOPPED
    base_url: str | None = None
    server_name: str | None = None
    ours: bool = True
    gpus: list[int] = field(default_factory=list)
    need: Need = field(default_factory=Need)
    weights_bytes: int = 0
    max_model_len: int | None = None
    in_flight: int = 0
    waiting: int = 0
    last_used: float = 0.0
    failure: str = ""
    failed_at: float = 0.0
    api_key: str | None = None  # the upstream's key, from the preset's api_key_env
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)  # set when a stop under way ends

    @property
    def pinned(self) -> bool:
        return bool(self.route.preset and self.route.preset.keep_loaded)

    @property
    def can_sleep(self) -> bool:
        preset = self.route.preset
        return bool(preset and preset.sleep_when_idle and preset.device == "cuda")


@dataclass
class FleetOptions:
    name: str = "gateway"
    idle_s: float = 600.0
    start_timeout_s: float = 1800.0
    hardware_file: str | None = None
    stop_timeout_s: float = 30.0


PORT_ATTEMPTS = 3
PORT_IN_USE = "VL514"  # vllm_launcher.doctor.logs: the port is already taken


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def estimate_need(preset: Preset, hardware: Hardware) -> tuple[Need, int, int | None]:
    """(memory the preset's server takes, its weights in bytes, its context length) from
    vllm_launcher.memory.estimate; an unknown model needs nothing we can count (vLLM refuses it if it does not
    fit)."""
    from vllm_launcher.memory.arch import load_arch
    from vllm_launcher.memory.estimate import estimate

    try:
        est = estimate(preset, load_arch(preset.model), hardware)
    except (LaunchError, ValueError, ArithmeticError):
        return Need(), 0, preset.max_model_len
    weights = int(est.weights_gib * GIB)
    if preset.device == "cpu":
        return Need({}, int((est.ram_needed_gib or 0) * GIB)), weights, est.effective_max_model_len
    world = preset.gpus_needed
    if preset.kv_cache_space_gib is not None:
        per_gpu = int(est.weights_bytes_per_gpu + (est.activation_gib + est.non_torch_gib + est.cuda_graph_gib
                                                     + est.kv_cache_gib) * GIB)
    else:
        per_gpu = int((est.requested_gib or 0) * GIB)
    gpu_need = Need(dict.fromkeys(range(world), per_gpu), GPU_SERVER_RAM_BYTES)
    return gpu_need, weights, est.effective_max_model_len


class Fleet:
    """Every route's backend, and the scheduling between them."""

    def __init__(self, table: RouteTable, hardware: Hardware, capacity: Capacity, options: FleetOptions,
                 metrics: Any = None, log: Any = None) -> None:
        self.table = table
        self.hardware = hardware
        self.capacity = capacity
        self.options = options
        self.metrics = metrics
        self.log = log or (lambda text: None)
        self.backends: dict[str, Backend] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self.closing = False  # set by shutdown: no new start; starts under way end at their next step
        self.http: Any = None  # aiohttp.ClientSession, set by the proxy
        for route in table.routes:
            backend = Backend(route)
            if route.external:
                backend.state, backend.base_url, backend.ours = RUNNING, route.upstream, False
            elif route.preset is not None:
                need = estimate_need(route.preset, hardware)
                backend.need, backend.weights_bytes, backend.max_model_len = need
                key_env = route.preset.api_key_env
                backend.api_key = os.environ.get(key_env) if key_env else None
            self.backends[route.name] = backend

    # ---------------------------------------------------------------------------------------- views

    def loaded(self) -> list[Loaded]:
        found = []
        for b in self.backends.values():
            if b.route.external or b.state not in (STARTING, RUNNING, SLEEPING):
                continue
            sleep_need = b.need.asleep(b.weights_bytes) if b.can_sleep else None
            now_need = sleep_need if b.state == SLEEPING and sleep_need else b.need
            found.append(Loaded(b.route.name, now_need, b.last_used, b.in_flight + b.waiting, b.pinned,
                                b.ours, b.state == SLEEPING, sleep_need))
        return found

    def model_state(self, backend: Backend) -> str:
        """As /v1/models says it: running, starting, idle (asleep), stopped (or failed)."""
        return {SLEEPING: "idle"}.get(backend.state, backend.state)

    # ------------------------------------------------------------------------------------- requests

    async def acquire(self, backend: Backend) -> Backend:
        """BACKEND ready to take a request (started, woken, or waited for), counted in flight. Raises
        GatewayError: 503 (cannot start, does not fit, failed), 429 (too many waiting)."""
        while True:
            if self.closing:
                raise GatewayError(503, "the gateway is stopping", retry_after_s=5)
            if backend.state == RUNNING:
                backend.in_flight += 1
                backend.last_used = time.monotonic()
                return backend
            if backend.state == SLEEPING:
                await self._wake(backend)
                continue
            since = time.monotonic() - backend.failed_at
            if backend.state == FAILED and since < FAILURE_COOLDOWN_S:
                raise GatewayError(503, f"{backend.route.name} failed to start: {backend.failure}",
                                   retry_after_s=max(1, int(FAILURE_COOLDOWN_S - since)))
            if backend.state == STOPPING:
                await self._wait_for_stop(backend)
                continue
            if backend.state == STARTING:
                await self._wait_for_start(backend)
                continue
            await self._schedule_start(backend)

    def release(self, backend: Backend) -> None:
        backend.in_flight = max(0, backend.in_flight - 1)
        backend.last_used = time.monotonic()

    async def _wait_for_start(self, backend: Backend) -> None:
        preset = backend.route.preset
        limit = preset.max_waiting if preset is not None else 64
        if backend.waiting >= limit:
            raise GatewayError(429, f"{backend.route.name} is starting and {backend.waiting} requests "
                               f"already wait for it (max_waiting {limit}); retry in a moment",
                               "rate_limit_error", retry_after_s=5)
        backend.waiting += 1
        try:
            await asyncio.wait_for(backend.ready.wait(), timeout=self.options.start_timeout_s)
        except asyncio.TimeoutError:
            raise GatewayError(503, f"{backend.route.name} is still starting after "
                               f"{self.options.start_timeout_s:g} s") from None
        finally:
            backend.waiting -= 1

    async def _wait_for_stop(self, backend: Backend) -> None:
        """Until the stop of BACKEND under way has ended (then the caller starts it again)."""
        backend.waiting += 1
        try:
            await backend.stopped.wait()
        finally:
            backend.waiting -= 1

    async def _schedule_start(self, backend: Backend) -> None:
        """Make room (sleep or stop the least recently used idle servers) and start BACKEND, or refuse."""
        async with self._lock:
            if backend.state not in (STOPPED, FAILED):
                return
            preset = backend.route.preset
            assert preset is not None
            loaded = self.loaded()
            need = backend.need
            if preset.device == "cuda" and need.gpu:
                world = len(need.gpu)
                backend.gpus = place_on_gpus(world, self.capacity, loaded, preset.gpus)
                per_gpu = next(iter(need.gpu.values()))
                need = Need(dict.fromkeys(backend.gpus, per_gpu), need.ram)
                backend.need = need
            decision = plan_start(backend.route.name, need, loaded, self.capacity)
            if not decision.fits:
                raise GatewayError(503, f"cannot start {decision.message}")
            await self._make_room(decision)
            backend.state, backend.failure = STARTING, ""
            backend.ready = asyncio.Event()
            self._spawn_task(self._start(backend))

    async def _make_room(self, decision: Decision) -> None:
        """Put to sleep, then stop, what DECISION names (under the lock). Every server named is STOPPING (or
        SLEEPING) before the first step begins: a request for one of them must not slip in while another
        stops. When a step fails, those not reached yet are running again."""
        sleeping = [self.backends[name] for name in decision.sleep]
        stopping = [self.backends[name] for name in decision.stop]
        for backend in stopping:
            self._mark_stopping(backend)
        for backend in sleeping:  # a request for one waits for the lock, then wakes it
            backend.state = SLEEPING
        done: set[str] = set()
        try:
            for backend in sleeping:
                await self._sleep(backend, reason="making room")
                done.add(backend.route.name)
            for backend in stopping:
                await self._stop(backend, reason="making room")
                done.add(backend.route.name)
                if self.metrics:
                    self.metrics.evictions.labels(model=backend.route.name).inc()
        finally:
            for backend in sleeping + stopping:
                if backend.route.name not in done and backend.state in (SLEEPING, STOPPING):
                    backend.state = RUNNING
                    backend.stopped.set()

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------------------- server's life

    async def _start(self, backend: Backend) -> None:
        name = backend.route.name
        started = time.monotonic()
        self.log(f"cold start {name}: starting its server")
        try:
            for attempt in range(1, PORT_ATTEMPTS + 1):
                record, daemon = await asyncio.to_thread(self._start_blocking, backend)
                final = await self._wait_ready(record, daemon)
                # The free port we picked can be taken by anyone before vLLM binds it: pick another.
                if final.diagnosis.get("rule") != PORT_IN_USE or attempt == PORT_ATTEMPTS or self.closing:
                    break
                self.log(f"cold start {name}: port {record.port} was taken before vLLM bound it; "
                         f"trying another (attempt {attempt + 1} of {PORT_ATTEMPTS})")
            if final.state == records.READY:
                backend.state, backend.base_url = RUNNING, final.endpoint
                backend.last_used = time.monotonic()
                seconds = time.monotonic() - started
                self.log(f"cold start {name}: ready in {seconds:.1f} s at {final.endpoint}")
                if self.metrics:
                    self.metrics.cold_starts.labels(model=name).inc()
                    self.metrics.cold_start_seconds.labels(model=name).observe(seconds)
            else:
                self._failed(backend, _why(final))
        except LaunchError as exc:
            self._failed(backend, str(exc))
        except Exception as exc:
            self._failed(backend, f"{type(exc).__name__}: {exc}")
        finally:
            backend.ready.set()

    def _failed(self, backend: Backend, why: str) -> None:
        backend.state, backend.failure, backend.failed_at = FAILED, why, time.monotonic()
        self.log(f"cold start {backend.route.name}: failed: {why}")

    def _start_blocking(self, backend: Backend) -> tuple[records.Record, subprocess.Popen]:
        """Pre-flight, claim and detached supervisor: exactly `up --detach`, on a free loopback port."""
        from vllm_launcher.preset.schema import ResolvedPreset
        from vllm_launcher.supervise import claim, detach, preflight

        route = backend.route
        assert route.preset is not None
        preset = route.preset.model_copy(update={"host": "127.0.0.1", "port": free_port()})
        resolved = ResolvedPreset(preset=preset, source=route.source, origin="file", chain=[route.source])
        gpus = ",".join(str(i) for i in backend.gpus) if preset.device == "cuda" and backend.gpus else None
        # No restart by the supervisor: a server that dies is started again by the next request for it.
        record = claim.make_record(resolved, name=route.name, gpus=gpus, restart="never",
                                   timeout_s=self.options.start_timeout_s, detach=True)
        record.managed_by = self.options.name
        unwritable = preflight.state_dirs_problem()
        if unwritable:
            raise LaunchError(unwritable)
        checked = preflight.preflight(preset, self.options.hardware_file)
        if checked.problems:
            raise LaunchError("; ".join(checked.problems))
        preflight.ensure_demo(preset)
        claim.claim(record)
        backend.server_name = record.name
        return record, detach.start_detached(record)

    async def _wait_ready(self, record: records.Record, daemon: subprocess.Popen) -> records.Record:
        """The record once its server is ready or failed (the supervisor decides; the phases are logged)."""
        from vllm_launcher.supervise import readiness

        deadline = time.monotonic() + self.options.start_timeout_s
        phase = None
        follower = None
        while True:
            current = records.read(record.name)
            if current is not None and follower is None and current.started_at:
                follower = readiness.LogFollower(Path(current.log_path))
                follower.offset = current.log_offset
            if follower is not None:
                for line in follower.read_lines():
                    found = readiness.detect_phase(line)
                    if found and readiness.phase_index(found) > readiness.phase_index(phase):
                        phase = found
                        self.log(f"cold start {record.name}: {found}")
            if current is not None and current.state in (records.READY, records.FAILED, records.STOPPED):
                return current
            if self.closing:  # shutdown stops it next
                record.reason, record.state = "the gateway stops", records.FAILED.value
                return record
            if daemon.poll() is not None and (current is None or current.state != records.READY):
                current = records.read(record.name) or record
                if current.state == records.READY:
                    return current
                current.reason = current.reason or f"its supervisor exited with code {daemon.returncode}"
                current.state = records.FAILED.value
                return current
            if time.monotonic() > deadline:
                await asyncio.to_thread(self._cleanup_blocking, record.name)
                record.reason = f"not ready after {self.options.start_timeout_s:g} s"
                record.state = records.FAILED.value
                return record
            await asyncio.sleep(POLL_S)

    def _cleanup_blocking(self, server_name: str | None) -> None:
        from vllm_launcher.supervise.stop import cleanup

        if not server_name or not records.valid_name(server_name):
            return
        record = records.read_any(server_name)
        if record is None:
            return
        if isinstance(record, records.Record) and record.managed_by != self.options.name:
            return  # the name now belongs to a server somebody else started: never ours to stop
        cleanup(record, self.options.stop_timeout_s)
        if isinstance(record, records.Record) and record.device == "cuda":
            # The next start on these GPUs measures free memory when it starts: wait until the stopped tree
            # no longer holds any (nvidia-smi), as the supervisor does before a restart.
            from vllm_launcher.machine import system

            pids = [int(pid) for pid, _created in record.tree or []] + [p for p in (record.server_pid,) if p]
            if not system.wait_gpu_released(pids, timeout_s=0):
                self.log(f"stopping {server_name}: waiting until its processes release GPU memory "
                         "(nvidia-smi)")
                if not system.wait_gpu_released(pids, timeout_s=self.options.stop_timeout_s):
                    self.log(f"stopping {server_name}: GPU memory still held after "
                             f"{self.options.stop_timeout_s:g} s; going on")

    def _mark_stopping(self, backend: Backend) -> None:
        """BACKEND is STOPPING from now on (no await between the decision to stop and this)."""
        if backend.ours and not backend.route.external and backend.state != STOPPING:
            backend.state = STOPPING
            backend.stopped = asyncio.Event()

    async def _stop(self, backend: Backend, reason: str) -> None:
        if not backend.ours or backend.route.external:
            return
        self._mark_stopping(backend)
        self.log(f"stopping {backend.route.name} ({reason})")
        try:
            await asyncio.to_thread(self._cleanup_blocking, backend.server_name)
        finally:
            backend.state, backend.base_url = STOPPED, None
            backend.stopped.set()

    async def _sleep(self, backend: Backend, reason: str) -> None:
        """vLLM's sleep mode, level 1: weights to host RAM, KV cache dropped; the process stays."""
        self.log(f"putting {backend.route.name} to sleep ({reason})")
        # SLEEPING before the call: a request arriving meanwhile waits for the lock, then wakes it.
        backend.state = SLEEPING
        try:
            await self._dev_call(backend, "POST", "/sleep?level=1")
        except GatewayError:
            backend.state = RUNNING
            raise
        if self.metrics:
            self.metrics.sleeps.labels(model=backend.route.name).inc()

    async def _wake(self, backend: Backend) -> None:
        async with self._lock:
            if backend.state != SLEEPING:
                return
            decision = plan_start(backend.route.name, backend.need, self.loaded(), self.capacity)
            if not decision.fits:
                raise GatewayError(503, f"cannot wake {decision.message}")
            await self._make_room(decision)
            started = time.monotonic()
            await self._dev_call(backend, "POST", "/wake_up")
            backend.state = RUNNING
            backend.last_used = time.monotonic()
            self.log(f"woke {backend.route.name} in {time.monotonic() - started:.2f} s")
            if self.metrics:
                self.metrics.wakes.labels(model=backend.route.name).inc()

    async def _dev_call(self, backend: Backend, method: str, path: str) -> None:
        """One of vLLM's dev endpoints (VLLM_SERVER_DEV_MODE=1, loopback only); GatewayError if it fails."""
        try:
            async with self.http.request(method, f"{backend.base_url}{path}") as response:
                if response.status >= 300:
                    raise GatewayError(503, f"{backend.route.name}: {method} {path} answered "
                                            f"{response.status}")
        except OSError as exc:  # aiohttp's client errors are OSErrors
            raise GatewayError(503, f"{backend.route.name}: {method} {path} failed: {exc}") from None

    # -------------------------------------------------------------------------- idle, state, shutdown

    async def tick(self) -> None:
        """Once a second: stop (or put to sleep) idle servers, and notice servers that went away."""
        now = time.monotonic()
        for backend in list(self.backends.values()):
            if backend.route.external or not backend.ours:
                continue
            if backend.state == RUNNING and backend.server_name:
                current = records.read(backend.server_name)
                if current is None or current.state in (records.FAILED, records.STOPPED):
                    # Its record stays (for `status`) until the next start or shutdown removes it.
                    why = f": {_why(current)}" if current is not None else " (its record is gone)"
                    self.log(f"{backend.route.name} ({backend.server_name}) ended{why}")
                    backend.state, backend.base_url = STOPPED, None
                    continue
            idle_s = self._idle_s(backend)
            if (backend.state == RUNNING and backend.in_flight == 0 and not backend.pinned and idle_s > 0
                    and now - backend.last_used > idle_s):
                async with self._lock:
                    if backend.state != RUNNING or backend.in_flight:
                        continue
                    with contextlib.suppress(GatewayError):
                        if backend.can_sleep:
                            await self._sleep(backend, reason=f"idle for {idle_s:g} s")
                            continue
                    await self._stop(backend, reason=f"idle for {idle_s:g} s")

    def _idle_s(self, backend: Backend) -> float:
        preset = backend.route.preset
        if preset is not None and preset.idle_timeout is not None:
            return float(preset.idle_timeout)
        return self.options.idle_s

    def adopt_running(self) -> None:
        """Servers already running for our presets (started by `up`, or by an earlier gateway of this name):
        routed to as they are; only those this gateway started are ever stopped by it."""
        for record in records.list_records():
            if record.kind != "server" or records.effective_state(record) != records.READY:
                continue
            backend = self.backends.get(record.preset)
            if backend is None or backend.route.external or backend.state != STOPPED:
                continue
            backend.state, backend.base_url, backend.server_name = RUNNING, record.endpoint, record.name
            backend.ours = record.managed_by == self.options.name
            backend.last_used = time.monotonic()
            if record.gpus:
                backend.gpus = [int(g) for g in record.gpus]
            self.log(f"{record.preset}: serving from the running server {record.name} at {record.endpoint}")

    async def shutdown(self) -> None:
        """Stop every server this gateway started, including those still starting: a start under way first
        finishes spawning (so that its record names what to stop), then is stopped with the rest."""
        self.closing = True
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for backend in self.backends.values():
            if backend.ours and backend.state in (STARTING, RUNNING, SLEEPING, FAILED, STOPPING):
                await self._stop(backend, reason="the gateway stops")
            elif backend.ours and backend.server_name and not backend.route.external:
                # Stopped after its server ended on its own (tick saw it): its record, which names this
                # gateway as its manager, is still there; nothing it started may outlive it.
                await asyncio.to_thread(self._cleanup_blocking, backend.server_name)


def _why(record: records.Record) -> str:
    parts = [record.reason or f"state {record.state}"]
    if record.diagnosis:
        parts.append(f"cause: {record.diagnosis.get('cause', '')}")
        parts.append(f"fix: {record.diagnosis.get('fix', '')}")
    return "; ".join(part for part in parts if part)
