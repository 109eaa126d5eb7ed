"""Process trees: spawn in a new session, track descendants, stop with nothing left, ports and /dev/shm.

Why so careful: vLLM's API server starts an EngineCore process which starts workers. A SIGKILL of the
API server orphans them (they keep their memory), SIGTERM is ignored during start-up (vLLM 0.32), and
the tree's shared-memory segments (`/dev/shm/psm_*`) outlive it. So we remember every process of the
tree (pid + start time) while it runs, stop the whole group with SIGINT → SIGTERM → SIGKILL, kill any
remembered member that left the group, and unlink the segments the tree had mapped.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from vllm_launcher.machine import system


def spawn(argv: list[str], env: Mapping[str, str], log_path: Path,
          cwd: str | None = None) -> subprocess.Popen:
    """Start ARGV in its own session (so its group can be signalled as one, and a terminal's Ctrl-C
    reaches only us), stdout+stderr appended to LOG_PATH, stdin closed."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab", buffering=0) as log:
        return subprocess.Popen(
            argv, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )


@dataclass
class Tree:
    """The processes of one server: its group and every process seen in it (pid → create_time)."""

    pgid: int
    members: dict[int, float] = field(default_factory=dict)
    shm_segments: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, pid: int) -> Tree:
        tree = cls(pgid=pid)
        tree.refresh(pid)
        return tree

    def refresh(self, root_pid: int | None = None) -> bool:
        """Add the current descendants of the known members; True when a new member appeared."""
        before = len(self.members)
        roots = [root_pid] if root_pid else []
        roots += list(self.members)
        for pid in roots:
            try:
                proc = psutil.Process(pid)
                if pid not in self.members:
                    self.members[pid] = proc.create_time()
                elif abs(proc.create_time() - self.members[pid]) > 0.05:
                    continue  # reused pid: not ours
                for child in proc.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        self.members.setdefault(child.pid, child.create_time())
            except psutil.Error:
                continue
        return len(self.members) != before

    def refresh_shm(self) -> bool:
        """Add the /dev/shm segments the live members map or hold open; True when one was added."""
        found = system.shm_segments_of(alive(self.members))
        added = found - self.shm_segments
        self.shm_segments |= found
        return bool(added)

    def as_list(self) -> list[list[float]]:
        return [[pid, created] for pid, created in sorted(self.members.items())]


def members_from_list(items: Iterable[Iterable[float]]) -> dict[int, float]:
    return {int(pid): float(created) for pid, created in items}


def alive(members: Mapping[int, float]) -> list[int]:
    """The members still running as the same processes (zombies count as gone)."""
    found = []
    for pid, created in members.items():
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - created) > 0.05 or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            found.append(pid)
        except psutil.Error:
            continue
    return found


def _descendants(pids: Iterable[int]) -> dict[int, float]:
    found: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    found[child.pid] = child.create_time()
    return found


def _group_exists(pgid: int) -> bool:
    """killpg(pgid, 0): cheap, but a zombie that nobody reaped keeps it true forever."""
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def group_alive(pgid: int) -> bool:
    """True when group PGID has a live member; zombies do not count (they would never go away unless
    their parent reaps them)."""
    return _group_exists(pgid) and bool(group_members(pgid))


def _signal_all(pgid: int | None, members: Mapping[int, float], sig: int) -> None:
    if pgid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    # Members that left the group (setsid, or a new group) get the signal one by one.
    for pid in alive(members):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _wait_gone(pgid: int | None, members: dict[int, float], timeout_s: float,
               reap: subprocess.Popen | None, hurry: Callable[[], bool] | None = None) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if reap is not None:
            reap.poll()  # our own child becomes a zombie until reaped
        members.update(_descendants(alive(members)))
        if not alive(members):
            in_group = group_members(pgid) if pgid and _group_exists(pgid) else {}
            if not in_group:
                return True
            members.update(in_group)  # a process we had not seen yet: it is ours, stop it too
        if time.monotonic() >= deadline or (hurry is not None and hurry()):
            return False
        time.sleep(0.02)


def group_members(pgid: int) -> dict[int, float]:
    """The live (non-zombie) processes of group PGID; killpg(pgid, 0) alone also counts zombies."""
    found: dict[int, float] = {}
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found[proc.pid] = proc.create_time()
        except (ProcessLookupError, psutil.Error, OSError):
            continue
    return found


@dataclass
class StopResult:
    signals: list[str]  # the signals that were needed, in order
    survivors: list[int]  # pids still alive afterwards (empty on success)
    seconds: float


# The polite part of a stop: which signal, then how long (a share of the timeout) before the next one.
RUNNING_STOP = ((signal.SIGINT, 0.6), (signal.SIGTERM, 0.4))
# Before ready there is nothing to drain, and vLLM 0.32 ignores SIGTERM while it starts: SIGINT, a short
# grace, then SIGKILL (with the shared memory removed by the caller).
STARTING_STOP = ((signal.SIGINT, 1.0),)
STARTING_GRACE_S = 2.5


def stop_tree(pgid: int | None, members: dict[int, float], timeout_s: float = 30.0,
              reap: subprocess.Popen | None = None, hurry: Callable[[], bool] | None = None,
              polite: tuple[tuple[signal.Signals, float], ...] = RUNNING_STOP) -> StopResult:
    """Stop every process of a tree: the POLITE signals to the group in turn (default SIGINT, vLLM's clean
    stop, then SIGTERM), each followed by its share of TIMEOUT_S, then SIGKILL to the group and to every
    remembered member and descendant (at most 10 s more). When HURRY() turns true (the user asked again),
    the polite waits end and the tree is killed at once."""
    started = time.monotonic()
    members.update(_descendants(alive(members)))
    signals: list[str] = []
    for sig, share in polite:
        if _wait_gone(pgid, members, 0, reap):
            break
        signals.append(sig.name)
        _signal_all(pgid, members, sig)
        if _wait_gone(pgid, members, timeout_s * share, reap, hurry):
            break
        if hurry is not None and hurry():
            break
    if not _wait_gone(pgid, members, 0, reap):
        signals.append("SIGKILL")
        for _ in range(3):  # a member may fork between the listing and the kill: repeat
            members.update(_descendants(alive(members)))
            _signal_all(pgid, members, signal.SIGKILL)
            if _wait_gone(pgid, members, 3.0, reap):
                break
    if reap is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            reap.wait(timeout=1.0)
    return StopResult(signals=signals, survivors=alive(members), seconds=time.monotonic() - started)


# ------------------------------------------------------------------------ vLLM's gloo file stores

# vLLM 0.32 (vllm.utils.network_utils.get_file_store_init_method) rendezvous through a file
# $TMPDIR/vllm_dist_<uuid4 hex> that it never removes; its worker logs
# `distributed_init_method=file:///tmp/vllm_dist_<hex>`. Only paths of exactly that shape are taken.
DIST_STORE_RE = re.compile(r"distributed_init_method=file://(/\S*/vllm_dist_[0-9a-f]{32})(?=\s|$)")


def dist_store_paths(lines: Iterable[str]) -> list[str]:
    """The vLLM file-store paths named in LINES (a server's log), in order, without repeats."""
    found: list[str] = []
    for line in lines:
        if "distributed_init_method=file://" not in line:
            continue
        for match in DIST_STORE_RE.finditer(line):
            path = match.group(1)
            if ".." not in path.split("/") and path not in found:
                found.append(path)
    return found


def remove_dist_stores(log_path: Path, offset: int = 0) -> list[str]:
    """Remove the file stores named in LOG_PATH (from byte OFFSET): only regular files of ours, never a
    link or another user's file. Returns the paths removed."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as log:
            log.seek(offset)
            paths = dist_store_paths(log)
    except OSError:
        return []
    removed = []
    for path in paths:
        try:
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
                continue
            os.unlink(path)
            removed.append(path)
        except OSError:
            continue
    return removed


def tree_rss_bytes(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss
    return total


