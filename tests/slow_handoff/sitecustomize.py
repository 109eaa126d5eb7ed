"""Test-only: widen the window in which `up --detach` hands its claim to the background supervisor.

Put this directory on PYTHONPATH. In the detached supervisor (`python -m vllm_launcher.supervise.daemon`)
only, the first read of the server's record is followed by a pause of SLOW_HANDOFF_S seconds
(SLOW_HANDOFF_AT=after, the default) or preceded by it (SLOW_HANDOFF_AT=before). Meanwhile the record
still names the claiming `up` as its supervisor: the interleaving in which `down` used to stop `up` alone
and report the port free while the daemon went on to start the server.
"""

import os
import time

_pause_s = float(os.environ.get("SLOW_HANDOFF_S", "0") or 0)
try:
    with open("/proc/self/cmdline", "rb") as _handle:
        _is_daemon = b"vllm_launcher.supervise.daemon" in _handle.read()
except OSError:
    _is_daemon = False

if _pause_s > 0 and _is_daemon:
    from vllm_launcher.machine import records

    _read_any = records.read_any
    _done: list[bool] = []

    def _slow_read_any(name: str):  # type: ignore[no-untyped-def]
        if _done:
            return _read_any(name)
        _done.append(True)
        if os.environ.get("SLOW_HANDOFF_AT", "after") == "before":
            time.sleep(_pause_s)
            return _read_any(name)
        found = _read_any(name)
        time.sleep(_pause_s)
        return found

    records.read_any = _slow_read_any
