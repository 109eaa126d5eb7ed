"""Shared fixtures: isolated XDG directories per test, free ports, the fake vLLM, and ONE real demo server
per test session (`demo_server`) for every test that needs a live vLLM."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent
FAKE_VLLM_DIR = REPO / "tests" / "fake_vllm"
FAKE_MODULE = "vllm.entrypoints.openai.api_server"
XDG_VARS = ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME")


_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_PORTS = itertools.cycle(range(20000 + 1000 * (_WORKER % 12), 21000 + 1000 * (_WORKER % 12)))


def free_port() -> int:
    """A TCP port nobody listens on right now, from this xdist worker's own block below the kernel's
    ephemeral range: the ports the kernel hands out (the gateway's servers, clients) and other workers'
    ports can never be the same one between our check and the server's bind."""
    for port in itertools.islice(_PORTS, 1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("all 1000 ports of this worker's block are taken")


def xdg_env(root: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    for var in XDG_VARS:
        path = root / var.lower()
        path.mkdir(parents=True, exist_ok=True)
        env[var] = str(path)
    return env


# Tests that start vLLM servers of their own (the estimate against vLLM's logs): one worker for them too, so
# that at most two real vLLMs run at once, the shared demo server and one of these.
OWN_VLLM_MODULES = ("test_estimate_vllm", "test_estimate_families")


@pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the group into the node id
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of the session's demo server in one xdist group: one worker runs them all, in order, with
    one server. Tests that start their own vLLM form a second group; the other `vllm` tests (they only need
    vLLM or torch installed) spread over the workers. The first demo test also pays for building the demo
    model (a minute and a half of training, more on a loaded machine) and starting it: 20 minutes each
    unless a test says otherwise."""
    for item in items:
        if "demo_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("vllm"))
            item.add_marker(pytest.mark.timeout(1200))  # after the test's own marker: that one wins
        elif item.get_closest_marker("vllm") and item.module.__name__ in OWN_VLLM_MODULES:
            item.add_marker(pytest.mark.xdist_group("vllm-own"))


@pytest.hookimpl(trylast=True)  # after xdist's, which appends the group to the node id
def pytest_collection_finish(session: pytest.Session) -> None:
    """Fail loudly when the demo server's tests would not share one worker (and so one server): pytest-xdist
    3.8 with pytest 9.2 silently ignores the group (see pyproject.toml's pin)."""
    if not session.config.getoption("loadgroup", default=False):  # set on xdist workers only
        return
    ungrouped = [item.nodeid for item in session.items
                 if "demo_server" in getattr(item, "fixturenames", ()) and not item.nodeid.endswith("@vllm")]
    if ungrouped:
        raise pytest.UsageError(f"the demo server's tests are not grouped on one xdist worker "
                                f"({ungrouped[0]}): pytest-xdist's --dist loadgroup does not work with this "
                                "pytest")


@pytest.fixture(autouse=True)
def isolated_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Every test gets its own config/state/cache directories: no user preset or server record leaks in."""
    env = xdg_env(tmp_path / "xdg")
    for var in XDG_VARS:
        monkeypatch.setenv(var, env[var])
    return env


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def fake_env(isolated_xdg: dict[str, str]) -> dict[str, str]:
    """The env for a CLI run whose `python -m vllm.entrypoints.openai.api_server` is the fake server."""
    env = dict(isolated_xdg)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAKE_VLLM_DIR), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    for var in list(env):
        if var.startswith("FAKE_VLLM_"):
            del env[var]
    return env


def write_preset(env: dict[str, str], name: str, port: int, **fields: object) -> str:
    """A user preset NAME serving a fake model on PORT (CPU, so no GPU start lock). It sets a KV size so that
    doctor's pre-flight (VL205: vLLM's default reservation of node 0's memory) does not depend on how much
    memory the machine has free while the tests run; the fake server ignores it."""
    directory = Path(env["XDG_CONFIG_HOME"]) / "vllm-launch" / "presets"
    directory.mkdir(parents=True, exist_ok=True)
    data = {"model": f"fake/{name}", "device": "cpu", "port": port, "kv_cache_space_gib": 1, **fields}
    (directory / f"{name}.yaml").write_text(json.dumps(data), encoding="utf-8")  # JSON is YAML
    return name


def cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vllm_launcher", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


# ------------------------------------------------------------------------- quoting a real vLLM's log
_FIRST_ERROR = re.compile(r"^.*(?:Traceback \(most recent call last\)| ERROR |^\w*(?:Error|Exception): ).*$",
                          re.MULTILINE)


def vllm_log_excerpt(log: str | Path, before: int = 3, after: int = 40, tail_chars: int = 1500) -> str:
    """What an assertion about a real vLLM's log should show: its first error or traceback with the lines
    around it (vLLM prints the root cause first, then "see root cause above" from every process), and the
    tail. LOG is the text or a path (a missing file says so)."""
    if isinstance(log, Path):
        try:
            text = log.read_text(errors="replace")
        except OSError as exc:
            return f"(no log at {log}: {exc.strerror})"
    else:
        text = log
    match = _FIRST_ERROR.search(text)
    if match is None:
        return f"(no error in the log; its last {tail_chars} characters)\n{text[-tail_chars:]}"
    lines = text.splitlines()
    first = text.count("\n", 0, match.start())
    head = "\n".join(lines[max(first - before, 0):first + after])
    return f"first error, line {first + 1}:\n{head}\n...\nlast {tail_chars} characters:\n{text[-tail_chars:]}"


def server_log_excerpt(env: dict[str, str], name: str) -> str:
    """vllm_log_excerpt of the log of managed server NAME (its record names it), for failed `up` runs."""
    record = record_json(env, name) or {}
    path = record.get("log_path") or record.get("log")
    if not path:
        logs = sorted((Path(env["XDG_STATE_HOME"]) / "vllm-launch").rglob(f"{name}.log"))
        path = str(logs[-1]) if logs else None
    return vllm_log_excerpt(Path(path)) if path else f"(no log found for {name})"


# ------------------------------------------------------------------- helpers for the supervise tests
def new_tag() -> str:
    return uuid.uuid4().hex[:12]


def tagged_processes(tag: str) -> list[psutil.Process]:
    """Live processes whose environment has FAKE_VLLM_TAG=TAG (the fake server, its children, strays)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            # The fake server and its children run this module; the CLI processes carry the tag too.
            if proc.environ().get("FAKE_VLLM_TAG") == tag and FAKE_MODULE in " ".join(proc.cmdline()):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def shm_of_tag(pids: list[int]) -> list[str]:
    return [name for name in os.listdir("/dev/shm") if any(name.startswith(f"psm_fake{pid}") for pid in pids)]


def wait_for(predicate: Callable[[], object], timeout_s: float = 30.0, interval_s: float = 0.05) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {predicate}")
        time.sleep(interval_s)


def record_json(env: dict[str, str], name: str) -> dict | None:
    path = Path(env["XDG_STATE_HOME"]) / "vllm-launch" / "servers" / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def status_of(env: dict[str, str], name: str) -> dict:
    result = cli(["status", name, "--json"], env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]


def port_is_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def kill_tagged(tag: str) -> None:
    """Last-resort cleanup so a failing test never leaves processes behind."""
    for proc in tagged_processes(tag):
        with contextlib.suppress(psutil.Error):
            proc.kill()


# ------------------------------------------------------------------------------ the real demo server


@dataclass
class DemoServer:
    """A real vLLM serving the demo preset, shared by the whole test session."""

    name: str
    port: int
    base_url: str
    log_path: str
    env: dict[str, str] = field(default_factory=dict)  # run the CLI with this env to see the server
    model: str = ""
    up_output: str = ""


def _user_demo_model() -> Path:
    from vllm_launcher import demo

    return demo.demo_model_dir()


# Where scripts/install.sh built the demo model: the user's cache, read before any test isolates XDG_*.
USER_DEMO_MODEL = _user_demo_model()


def seed_demo_model(env: dict[str, str]) -> None:
    """Copy the demo model install.sh built into ENV's cache, when it is complete: the same hash of its
    builder names both, so it is the model `up demo` would build. Building it under the suite's load (three
    other workers on two cores) took more than the 15 minutes the session's server was given, on an AMD
    EPYC where it trains in 2.5 minutes alone. Without it, `up demo` builds as a user's first start does."""
    import shutil

    from vllm_launcher.demo import tiny_model

    if tiny_model.is_complete(USER_DEMO_MODEL):
        target = Path(env["XDG_CACHE_HOME"]) / USER_DEMO_MODEL.relative_to(USER_DEMO_MODEL.parents[2])
        shutil.copytree(USER_DEMO_MODEL, target, dirs_exist_ok=True)


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory: pytest.TempPathFactory):
    """`vllm-launch up demo --detach` once per session (real vLLM on the CPU), `down` at the end.
    Fails loudly when vLLM or the demo preset is missing: never skipped."""
    root = tmp_path_factory.mktemp("demo-server")
    env = xdg_env(root)
    env["PYTHONUNBUFFERED"] = "1"
    seed_demo_model(env)
    port = free_port()
    name = "demo-session"
    try:
        started = cli(["up", "demo", "--detach", "--name", name, "--port", str(port), "--timeout", "900"],
                      env, timeout=1800)
    except subprocess.TimeoutExpired as exc:  # `up` is killed, the daemon it spawned is not: down stops it
        cli(["down", name], env, timeout=120)
        said = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        pytest.fail(f"`up demo` ran past {exc.timeout:.0f} s:\n{said[-3000:]}\nits log, "
                    f"{server_log_excerpt(env, name)}")
    if started.returncode != 0:
        log = server_log_excerpt(env, name)
        cli(["down", name], env, timeout=120)
        pytest.fail(f"demo server did not start (exit {started.returncode}):\n"
                    f"{started.stdout}\n{started.stderr}\nits log, {log}")
    status = json.loads(cli(["status", name, "--json"], env).stdout)[0]
    server = DemoServer(name=name, port=port, base_url=f"http://127.0.0.1:{port}/v1", log_path=status["log"],
                        env=env, model=status["model"], up_output=started.stdout)
    try:
        yield server
    finally:
        stopped = cli(["down", name], env, timeout=180)
        time.sleep(0.1)
        assert stopped.returncode == 0, stopped.stderr


@pytest.fixture
def tag(fake_env: dict[str, str]):
    """Marks the fake server's processes (FAKE_VLLM_TAG) and fails the test if any is left behind."""
    value = new_tag()
    fake_env["FAKE_VLLM_TAG"] = value
    yield value
    leftovers = tagged_processes(value)
    kill_tagged(value)
    assert not leftovers, f"processes left behind: {[p.pid for p in leftovers]}"


# ------------------------------------------------------------------------- the tiers' times, printed by CI
_TIER_SPANS: dict[str, list[float]] = {}  # tier or xdist group -> [first start, last stop, tests, seconds]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Runs in the controller with xdist too: each test's start and stop, by tier and by xdist group (a
    group runs on one worker, in order: its span is a chain no other worker can shorten)."""
    if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
        return
    keys = ["vllm" if "vllm" in report.keywords else "fast"]
    group = re.search(r"@([A-Za-z0-9_-]+)$", report.nodeid)  # xdist's suffix (a parameter may hold "@")
    if group:
        keys.append(f"xdist group {group[1]}")
    for key in keys:
        span = _TIER_SPANS.setdefault(key, [report.start, report.stop, 0, 0.0])
        span[0], span[1] = min(span[0], report.start), max(span[1], report.stop)
        span[2], span[3] = span[2] + 1, span[3] + report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fast tier's wall time (first test's start to the last one's end) and the real-vLLM tier's, so a
    CI log shows both (the fast tier's budget is 60 s on a 2-core machine, next to the vLLM tier)."""
    labels = {"fast": "fast tier (not vllm)", "vllm": "real-vLLM tier"}
    for tier, (start, stop, count, seconds) in sorted(_TIER_SPANS.items()):
        terminalreporter.write_line(f"{labels.get(tier, tier)}: {count} tests from "
                                    f"{start - _SESSION_START:.0f} s to {stop - _SESSION_START:.0f} s of the "
                                    f"session ({stop - start:.0f} s; {seconds:.0f} test-seconds)")


_SESSION_START = time.time()
