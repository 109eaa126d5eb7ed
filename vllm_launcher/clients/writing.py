"""Writing a user's config file without hurting it: the real file behind symlinks, its owner and mode kept
(also when we run as root on someone's home), a backup of what was there, an atomic rename; and the ledger
of the entries we wrote (`$XDG_STATE_HOME/vllm-launch/clients.json`), so that a later run changes only its
own entries and `--restore` puts back what was there before.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vllm_launcher.base.errors import ConfigError

MAX_CONFIG_BYTES = 4 << 20
BACKUP_SUFFIX = ".vllm-launch.bak"
ABSENT = {"__vllm_launch_absent__": True}  # "there was no entry": a JSON value no client config holds


@dataclass(frozen=True)
class FileState:
    """A file as read: the real path (symlinks followed), its text (None: no file yet), mode and owner."""

    shown: str
    target: Path
    text: str | None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None


def real_target(path: Path) -> Path:
    """PATH with its symlinks followed (a link into a dotfiles repo stays a link)."""
    try:
        target = Path(os.path.realpath(path.expanduser()))
    except OSError as exc:
        raise ConfigError(f"cannot use it: {exc.strerror or exc}", source=str(path)) from None
    if target.is_symlink():
        raise ConfigError("is a symlink loop", source=str(path))
    if target.is_dir():
        raise ConfigError("is a directory, not a file", source=str(path))
    return target


def read_state(path: Path) -> FileState:
    """The file at PATH now (bounded; a non-regular file is refused by files.read_user_file)."""
    from vllm_launcher.base.files import read_user_file

    target = real_target(path)
    try:
        if not os.path.lexists(target):
            return FileState(str(path), target, None)
        info = target.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", source=str(path)) from None
    text = read_user_file(target, max_bytes=MAX_CONFIG_BYTES, what="cannot read the client's config")
    return FileState(str(path), target, text, info.st_mode & 0o7777, info.st_uid, info.st_gid)


def _new_file_owner(directory: Path) -> tuple[int, int] | None:
    """Who a new file belongs to: when we run as root in someone's directory, its owner (a file in their
    home that they cannot read would break their client); otherwise ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        info = directory.stat()
    except OSError:
        return None
    return (info.st_uid, info.st_gid) if info.st_uid != 0 else None


def _make_parents(directory: Path) -> None:
    """Create DIRECTORY and its missing parents; as root, each new one belongs to the owner of the nearest
    directory that was there (~/.claude made by `sudo vllm-launch launch` must stay its user's)."""
    missing = []
    existing = directory
    while not existing.exists():
        missing.append(existing)
        existing = existing.parent
    directory.mkdir(parents=True, exist_ok=True)
    owner = _new_file_owner(existing)
    for created in reversed(missing):
        if owner is not None:
            os.chown(created, *owner)


def _stage(target: Path, text: str, mode: int, owner: tuple[int, int] | None) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:  # newline="": CRLF stays CRLF
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            if owner is not None and (owner[0] != os.geteuid() or owner[1] != os.getegid()):
                os.fchown(handle.fileno(), owner[0], owner[1])
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def write_keeping(before: FileState, text: str, *, backup: bool = True) -> Path | None:
    """Write TEXT over the file BEFORE describes, atomically, with its mode and owner (a new file: the
    umask's mode, the directory owner's when we are root), after saving the old text beside it
    (FILE.vllm-launch.bak, same mode and owner). Returns the backup's path (None: there was no file)."""
    target = before.target
    try:
        _make_parents(target.parent)
        if before.text is not None and before.mode is not None:
            mode = before.mode
            owner = (before.uid, before.gid) if before.uid is not None and before.gid is not None else None
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode, owner = 0o666 & ~umask, _new_file_owner(target.parent)
        saved = None
        if backup and before.text is not None:
            saved = target.with_name(target.name + BACKUP_SUFFIX)
            os.replace(_stage(saved, before.text, mode, owner), saved)
        os.replace(_stage(target, text, mode, owner), target)
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror or exc}", source=before.shown) from None
    return saved


def remove_file(before: FileState) -> None:
    """Remove a file that was ours alone, and our backup of it."""
    try:
        before.target.unlink(missing_ok=True)
        before.target.with_name(before.target.name + BACKUP_SUFFIX).unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot remove: {exc.strerror or exc}", source=before.shown) from None


# ------------------------------------------------------------------------------------------ the ledger


def ledger_path() -> Path:
    from vllm_launcher.base.paths import state_dir

    return state_dir() / "clients.json"


def read_ledger() -> dict:
    """{real file path: {entry key: {"wrote": value, "before": value or ABSENT}}}; a damaged ledger reads as
    empty (we then own nothing, so nothing of the user's is ever taken for ours)."""
    try:
        data = json.loads(ledger_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()) else {}


def write_ledger(data: dict) -> None:
    from vllm_launcher.base import atomic

    path = ledger_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n", mode=0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror or exc}", source=str(path)) from None
