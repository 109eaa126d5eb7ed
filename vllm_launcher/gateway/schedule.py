"""What must make room for a server to start, by the memory estimate: pure arithmetic over what is loaded.

Each server needs bytes on each GPU it uses and bytes of host RAM (vllm_launcher.memory.estimate: on GPU the
utilization share of each GPU, or weights + activations + KV when the KV size is fixed; on CPU weights + KV
+ runtime). A sleeping server (vLLM's sleep mode, level 1) keeps only its CUDA context on the GPU and holds
its weights in host RAM. When the free room is short, the least recently used servers with no request in
flight, not pinned (keep_loaded) and started by the gateway make room: put to sleep when that frees
enough GPU memory and the host RAM takes the weights, else stopped. If even that is not enough, the start
is refused with the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vllm_launcher.base.units import GIB

# What a sleeping vLLM keeps on each of its GPUs (CUDA context, allocator pools).
SLEEPING_GPU_BYTES = GIB // 2


@dataclass(frozen=True)
class Need:
    """Memory one server takes: bytes per GPU index, and bytes of host RAM."""

    gpu: dict[int, int] = field(default_factory=dict)
    ram: int = 0

    def asleep(self, weights_bytes: int) -> Need:
        """The same server asleep: its CUDA context on each GPU, its weights moved to host RAM."""
        return Need({index: min(SLEEPING_GPU_BYTES, used) for index, used in self.gpu.items()},
                    self.ram + weights_bytes)


@dataclass(frozen=True)
class Loaded:
    """A server that holds memory now."""

    name: str
    need: Need  # as it is now (asleep: its sleeping need)
    last_used: float
    in_flight: int = 0
    pinned: bool = False
    ours: bool = True  # started by this gateway (others are never stopped by it)
    asleep: bool = False
    sleep_need: Need | None = None  # when it can sleep (GPU, sleep_when_idle) and is awake


@dataclass(frozen=True)
class Capacity:
    gpu: dict[int, int]  # usable bytes per GPU
    ram: int


@dataclass(frozen=True)
class Decision:
    fits: bool
    sleep: tuple[str, ...] = ()
    stop: tuple[str, ...] = ()
    message: str = ""


def _free(capacity: Capacity, loaded: list[Loaded]) -> tuple[dict[int, int], int]:
    gpu = dict(capacity.gpu)
    ram = capacity.ram
    for server in loaded:
        for index, used in server.need.gpu.items():
            gpu[index] = gpu.get(index, 0) - used
        ram -= server.need.ram
    return gpu, ram


def _short(need: Need, gpu_free: dict[int, int], ram_free: int) -> list[str]:
    """What is missing, as the message says it ("needs 15.2 GiB on GPU 0, 6.1 GiB free")."""
    missing = []
    for index, want in sorted(need.gpu.items()):
        have = gpu_free.get(index, 0)
        if want > have:
            missing.append(f"needs {want / GIB:.1f} GiB on GPU {index}, {max(0, have) / GIB:.1f} GiB free")
    if need.ram > ram_free:
        missing.append(f"needs {need.ram / GIB:.1f} GiB of host RAM, {max(0, ram_free) / GIB:.1f} GiB free")
    return missing


def plan_start(target: str, need: Need, loaded: list[Loaded], capacity: Capacity) -> Decision:
    """Whether TARGET (needing NEED) fits next to LOADED within CAPACITY, and if not, which servers to put to
    sleep and which to stop (in that order) so that it does; or why it cannot."""
    others = [server for server in loaded if server.name != target]
    gpu_free, ram_free = _free(capacity, others)
    if not _short(need, gpu_free, ram_free):
        return Decision(True)
    movable = sorted((s for s in others if s.ours and not s.pinned and s.in_flight == 0),
                     key=lambda s: s.last_used)
    to_sleep: list[str] = []
    to_stop: list[str] = []
    for server in movable:  # least recently used first
        if not _short(need, gpu_free, ram_free):
            break
        gpu_short = any(need.gpu.get(i, 0) > gpu_free.get(i, 0) for i in need.gpu)
        shares_gpu = any(i in server.need.gpu for i in need.gpu)
        if server.sleep_need is not None and not server.asleep and gpu_short and shares_gpu:
            extra_ram = server.sleep_need.ram - server.need.ram
            if extra_ram <= ram_free - need.ram:
                for index, used in server.need.gpu.items():
                    gpu_free[index] = gpu_free.get(index, 0) + used - server.sleep_need.gpu.get(index, 0)
                ram_free -= extra_ram
                to_sleep.append(server.name)
                continue
        for index, used in server.need.gpu.items():
            gpu_free[index] = gpu_free.get(index, 0) + used
        ram_free += server.need.ram
        to_stop.append(server.name)
    missing = _short(need, gpu_free, ram_free)
    if not missing:
        return Decision(True, tuple(to_sleep), tuple(to_stop))
    busy = [s.name for s in others if s.in_flight > 0]
    pinned = [s.name for s in others if s.pinned]
    foreign = [s.name for s in others if not s.ours]
    parts = (f"busy: {', '.join(busy)}" if busy else "", f"pinned: {', '.join(pinned)}" if pinned else "",
             f"not started by the gateway: {', '.join(foreign)}" if foreign else "")
    held = "; ".join(part for part in parts if part)
    return Decision(False, message=f"{target} {'; '.join(missing)}" + (f"; {held}" if held else ""))


def place_on_gpus(world: int, capacity: Capacity, loaded: list[Loaded],
                  allowed: list[int] | None) -> list[int]:
    """The WORLD GPUs a new server should use: ALLOWED when given, else those with the most free memory
    (lowest index first on a tie)."""
    if allowed:
        return list(allowed)[:world]
    gpu_free, _ram = _free(capacity, loaded)
    ranked = sorted(capacity.gpu, key=lambda index: (-gpu_free.get(index, 0), index))
    return sorted(ranked[:world])
