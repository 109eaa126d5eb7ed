"""One Python per test worker with vLLM's CLI modules imported once: the tests that ask vLLM's own parser
(tests/test_vllm_parser.py, the flag table, the recipes) hand it their scripts instead of each starting a
Python that imports vLLM (about 20 CPU-seconds apiece on a 2-core machine). Each script runs in a child
forked from it, so it gets a process of its own, with its own stdin, stdout, stderr and exit status, as
`python -c SCRIPT` would give it; only the import is shared.

The helper is in a session of its own and exits when its stdin closes (the worker is gone), so it outlives
nothing; `close()` (at the worker's exit) kills it and its group."""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import traceback

# What the scripts import: loaded once, before the first script.
PRELOAD = (
    "vllm.utils.argparse_utils",
    "vllm.entrypoints.launchers.cli_args",
    "vllm.tool_parsers",
    "vllm.model_executor.layers.quantization",
)
START_TIMEOUT_S = 300.0


def _run_one(request: dict) -> dict:
    """Fork; the child runs REQUEST's code as __main__ with its input on fd 0 and fds 1 and 2 in files."""
    with tempfile.TemporaryFile("w+") as stdin, tempfile.TemporaryFile("w+") as out, \
            tempfile.TemporaryFile("w+") as err:
        stdin.write(request.get("input") or "")
        stdin.flush()
        stdin.seek(0)
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                for fd, file in ((0, stdin), (1, out), (2, err)):
                    os.dup2(file.fileno(), fd)
                sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the child's own fd 0
                sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
                if request.get("cwd"):
                    os.chdir(request["cwd"])
                sys.argv = ["-c"]
                exec(compile(request["code"], "<string>", "exec"), {"__name__": "__main__"})
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                if not isinstance(exc.code, int | None):
                    print(exc.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return {"returncode": os.waitstatus_to_exitcode(status), "stdout": out.read(), "stderr": err.read()}


def serve() -> None:
    """The helper: replies (one JSON line each) on the fd that was its stdout; vLLM's import chatter and
    the children's inherited fd 1 go to its stderr instead."""
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    import importlib

    for module in PRELOAD:
        importlib.import_module(module)
    replies.write(json.dumps({"ready": True}) + "\n")
    replies.flush()
    for line in sys.stdin:
        replies.write(json.dumps(_run_one(json.loads(line))) + "\n")
        replies.flush()


# ------------------------------------------------------------------------------------------- the client
_helper: subprocess.Popen[str] | None = None


def _read_reply(proc: subprocess.Popen[str], timeout_s: float, what: str) -> dict:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    line = proc.stdout.readline() if ready else ""
    if not line:
        close()
        raise AssertionError(f"the warm vLLM helper gave no answer to {what} in {timeout_s:g} s "
                             f"(vLLM is not usable here? install the cpu extra); its stderr: {_log_tail()}")
    return json.loads(line)


_LOG = tempfile.NamedTemporaryFile("w+", prefix="warm-vllm-", suffix=".log", delete=False)  # noqa: SIM115


def _log_tail() -> str:
    with open(_LOG.name, encoding="utf-8", errors="replace") as log:
        return log.read()[-3000:]


def _started() -> subprocess.Popen[str]:
    global _helper
    if _helper is None or _helper.poll() is not None:
        _helper = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=_LOG, text=True, start_new_session=True)
        _read_reply(_helper, START_TIMEOUT_S, "its start (importing vLLM)")
    return _helper


def run_python(code: str, input: str = "", cwd: str | None = None,
               timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """`python -c CODE` with INPUT on stdin, in a process forked from the warm helper."""
    proc = _started()
    assert proc.stdin is not None
    proc.stdin.write(json.dumps({"code": code, "input": input, "cwd": cwd}) + "\n")
    proc.stdin.flush()
    reply = _read_reply(proc, timeout, "a script")
    return subprocess.CompletedProcess(["python", "-c", code], reply["returncode"], reply["stdout"],
                                       reply["stderr"])


def close() -> None:
    global _helper
    if _helper is not None:
        if _helper.poll() is None:
            os.killpg(_helper.pid, signal.SIGKILL)
        _helper.wait()
        for pipe in (_helper.stdin, _helper.stdout):
            if pipe is not None:
                pipe.close()
        _helper = None


@atexit.register
def _at_exit() -> None:
    close()
    _LOG.close()
    os.unlink(_LOG.name)


if __name__ == "__main__":
    serve()
