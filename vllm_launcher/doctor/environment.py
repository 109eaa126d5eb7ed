"""Looking at this machine for doctor: the installed vLLM's tool parsers, CPU flags, who holds a port,
/dev/shm leftovers, stale and damaged server records. Built on `system` and `records`; results are plain
data for the rules.
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from vllm_launcher.machine import records, system
from vllm_launcher.machine.system import VllmInfo


@dataclass(frozen=True)
class PortOwner:
    port: int
    holder: str | None = None  # "pid 123 (python -m ...)" when we may see it (system.port_owner)


@dataclass
class EnvFacts:
    """What environment rules look at (VL3xx, scope environment)."""

    vllm: VllmInfo = field(default_factory=VllmInfo)
    interpreter: str = sys.executable
    torchvision_version: str | None = None
    vllm_script: str | None = None  # the `vllm` console script next to the interpreter, if any
    vllm_dist_metadata: bool = False  # a distribution named exactly `vllm` is installed
    shm_orphans: list[tuple[str, int]] = field(default_factory=list)  # (path, bytes)
    stale_records: list[tuple[str, str]] = field(default_factory=list)  # (server name, reason)
    corrupt_records: list[tuple[str, str]] = field(default_factory=list)  # (server name, path: what is wrong)


# -------------------------------------------------------------------------------------------- vLLM

_REGISTER_TABLE = re.compile(r"_TOOL_PARSERS_TO_REGISTER\s*=\s*\{(.*?)\n\}", re.DOTALL)
_TABLE_KEY = re.compile(r'^\s+"([^"]+)"\s*:\s*\(', re.MULTILINE)
_REGISTER_CALL = re.compile(r"register_(?:lazy_)?module\(\s*(?:name\s*=\s*)?(\[[^\]]*\]|\"[^\"]+\"|'[^']+')")
_QUOTED = re.compile(r"[\"']([^\"']+)[\"']")


def parse_tool_parser_names(sources: list[str]) -> frozenset[str]:
    """Parser names registered in vLLM source texts: the lazy table (0.1x+) or register_module calls."""
    names: set[str] = set()
    for text in sources:
        table = _REGISTER_TABLE.search(text)
        if table:
            names.update(_TABLE_KEY.findall(table.group(1)))
        for match in _REGISTER_CALL.finditer(text):
            names.update(_QUOTED.findall(match.group(1)))
    return frozenset(names)


@functools.lru_cache(maxsize=8)
def tool_parsers(package_dir: str | None) -> frozenset[str] | None:
    """The tool-call parsers an installed vLLM registers, read from its files (fast: no import)."""
    if not package_dir:
        return None
    root = Path(package_dir)
    candidates = [root / "tool_parsers", root / "entrypoints" / "openai" / "tool_parsers"]
    sources = []
    for directory in candidates:
        if directory.is_dir():
            for path in sorted(directory.glob("*.py")):
                try:
                    sources.append(path.read_text(encoding="utf-8", errors="replace"))
                except OSError:
                    continue
    names = parse_tool_parser_names(sources)
    return names or None


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str] | None:
    """CPU feature flags from /proc/cpuinfo (`flags` on x86, `Features` on ARM); None when unreadable."""
    from vllm_launcher.machine.hardware import all_cpu_flags

    return all_cpu_flags()


# -------------------------------------------------------------------------------------------- ports


def port_owner(host: str, port: int) -> PortOwner | None:
    """Who holds HOST:PORT so that vLLM could not bind it (None: free). Raises OSError when HOST is not an
    address of this machine (nothing to bind: VL309)."""
    import errno
    import os

    verdict = system.port_check(host, port)
    if verdict == system.PORT_FREE:
        return None
    if verdict == system.PORT_NOT_LOCAL:
        raise OSError(errno.EADDRNOTAVAIL, os.strerror(errno.EADDRNOTAVAIL))
    return PortOwner(port=port, holder=system.port_owner(port))


# ------------------------------------------------------------------------------------------ leftovers


def stale_records() -> list[tuple[str, str]]:
    """Managed servers whose record says running but whose supervisor is gone."""
    stale = []
    for record in records.list_records():
        if records.effective_state(record) == records.STALE:
            stale.append((record.name, (f"recorded as {record.state}, supervisor pid "
                                       f"{record.supervisor_pid} is gone")))
    return stale


def corrupt_records() -> list[tuple[str, str]]:
    """(server name, what is wrong) for every file in the records directory that is not a valid record."""
    return [(r.name, f"{r.path}: {r.error}") for r in records.list_any()
            if isinstance(r, records.CorruptRecord)]


def managed_record(name: str):
    """The supervisor's record of a live server named NAME, else of a live server started from preset
    NAME; None when there is none (or no supervisor). Damaged records are never returned (VL310)."""
    record = records.read(name) if records.valid_name(name) else None
    if record is not None and records.server_alive(record):
        return record
    for record in records.list_records():
        if record.preset == name and records.server_alive(record):
            return record
    return None


def gather_environment() -> EnvFacts:
    """Everything the environment rules need, looked up once."""
    from importlib import metadata

    info = system.vllm_info(None)
    try:
        torchvision = metadata.version("torchvision")
    except metadata.PackageNotFoundError:
        torchvision = None
    try:
        metadata.distribution("vllm")
        has_vllm_dist = True
    except metadata.PackageNotFoundError:
        has_vllm_dist = False
    script = Path(sys.executable).parent / "vllm"
    return EnvFacts(vllm=info, torchvision_version=torchvision,
                    vllm_script=str(script) if script.exists() else None, vllm_dist_metadata=has_vllm_dist,
                    shm_orphans=system.shm_orphans(), stale_records=stale_records(),
                    corrupt_records=corrupt_records())
