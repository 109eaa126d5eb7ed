"""Reading files the user names (presets, saved probes, logs, model configs) without hanging or blowing up.

A path can name a FIFO (opening it blocks until a writer comes), a device (endless), a symlink loop, a
directory, or a file of gigabytes. Only regular files are read, up to a size; everything else is one
ConfigError naming the file (exit 2).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from vllm_launcher.base.errors import ConfigError


def read_user_file(path: str | Path, *, max_bytes: int, tail: bool = False, what: str = "",
                   missing: str = "") -> str:
    """The UTF-8 text of PATH, a regular file. Larger than MAX_BYTES: refused, or with TAIL its last
    MAX_BYTES are read (logs). WHAT prefixes the reason ("cannot read hardware file: ..."); MISSING replaces
    the message for a file that does not exist. Raises ConfigError."""
    prefix = f"{what}: " if what else ""
    fd = _open_regular(path, prefix, missing)
    try:
        data = _read_bounded(fd, path, prefix, max_bytes, tail)
    except OSError as exc:
        raise ConfigError(f"{prefix}cannot read: {exc.strerror or exc}", source=path) from None
    finally:
        os.close(fd)
    if tail:
        return data.decode("utf-8", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{prefix}cannot read: not UTF-8 text ({exc.reason} at byte {exc.start})",
                          source=path) from None


def _open_regular(path: str | Path, prefix: str, missing: str) -> int:
    """A descriptor of PATH open for reading, when it is a regular file; else ConfigError."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer must not hang (it is refused just below).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(missing or f"{prefix}no such file", source=path) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"{prefix}symlink loop (too many levels of symbolic links)",
                              source=path) from None
        raise ConfigError(f"{prefix}cannot read: {exc.strerror or exc}", source=path) from None
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode):
        return fd
    os.close(fd)
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{prefix}is a directory, not a file", source=path)
    kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    raise ConfigError(f"{prefix}is {kind}, not a regular file", source=path)


def _read_bounded(fd: int, path: str | Path, prefix: str, max_bytes: int, tail: bool) -> bytes:
    """At most MAX_BYTES of FD: refused when there are more, unless TAIL (then the last MAX_BYTES)."""
    size = os.fstat(fd).st_size
    if size > max_bytes:
        if not tail:
            raise ConfigError(f"{prefix}is {size:,} bytes; at most {max_bytes:,} are read", source=path)
        os.lseek(fd, size - max_bytes, os.SEEK_SET)
    chunks, left = [], max_bytes + 1
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    data = b"".join(chunks)
    if len(data) > max_bytes:  # it grew while we read
        if not tail:
            raise ConfigError(f"{prefix}holds more than {max_bytes:,} bytes", source=path)
        data = data[-max_bytes:]
    return data
