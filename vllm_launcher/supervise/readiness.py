"""Is it ready? `/health` → 200 and `/v1/models` lists the served model. Also: which start-up phase the
log shows, and a cheap incremental reader of the log. Stdlib only (http.client), so the detached
supervisor stays small.
"""

from __future__ import annotations

import http.client
import json
import re
from dataclasses import dataclass
from pathlib import Path

# Start-up phases in the order vLLM goes through them, with the log texts of vLLM 0.32 that start each
# (v1/engine/core.py, v1/worker/*model_runner.py, model_loader/default_loader.py, v1/worker/gpu_worker.py,
# v1/core/kv_cache_utils.py, entrypoints/launchers/api_server/entry.py, uvicorn).
PHASES: list[tuple[str, re.Pattern[str]]] = [
    ("starting engine", re.compile(r"non-default args:|Resolved architecture:|Initializing a V1 LLM engine|"
                                   r"vLLM API server version")),
    ("loading weights", re.compile(r"Starting to load model|Loading weights|Loading safetensors|"
                                   r"Loading model from scratch|Downloading|\.safetensors")),
    ("memory profiling", re.compile(r"Model loading took|Loading weights took|Memory profiling")),
    ("KV cache allocation", re.compile(r"Available KV cache memory|KV cache size:|for KV cache on node|"
                                       r"Maximum concurrency for")),
    ("CUDA graphs / warm-up", re.compile(r"Capturing CUDA graph|Graph capturing|Warming up model")),
    ("API server starting", re.compile(r"init engine \(profile, create kv cache|Starting vLLM server on|"
                                       r"Supported tasks|Available routes are|Started server process|"
                                       r"Waiting for application startup|Application startup complete")),
]


def detect_phase(line: str) -> str | None:
    """The phase a log line announces (the latest phase whose text matches), or None."""
    found = None
    for name, pattern in PHASES:
        if pattern.search(line):
            found = name
    return found


def phase_index(name: str | None) -> int:
    for index, (phase, _pattern) in enumerate(PHASES):
        if phase == name:
            return index
    return -1


@dataclass
class Probe:
    health_status: int | None  # None: no answer (refused, timeout)
    models: list[str]
    ready: bool
    error: str = ""


def http_get(host: str, port: int, path: str, timeout_s: float = 1.0,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """(status, body) of GET http://HOST:PORT/PATH. Raises OSError when nothing answers."""
    connection = http.client.HTTPConnection(_connect_host(host), port, timeout=timeout_s)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    except http.client.HTTPException as exc:
        raise OSError(str(exc)) from exc
    finally:
        connection.close()


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)


def health(host: str, port: int, timeout_s: float = 1.0) -> int | None:
    """The status of `/health`, or None when nothing answers."""
    try:
        status, _body = http_get(host, port, "/health", timeout_s)
        return status
    except OSError:
        return None


def served_models(host: str, port: int, api_key: str | None = None, timeout_s: float = 2.0) -> list[str]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    status, body = http_get(host, port, "/v1/models", timeout_s, headers)
    if status != 200:
        raise OSError(f"/v1/models answered {status}")
    data = json.loads(body.decode("utf-8", "replace"))
    return [str(item.get("id")) for item in data.get("data", []) if isinstance(item, dict)]


def probe(host: str, port: int, served_model: str, api_key: str | None = None,
          timeout_s: float = 1.0) -> Probe:
    """Ready = `/health` is 200 and `/v1/models` lists SERVED_MODEL."""
    status = health(host, port, timeout_s)
    if status != 200:
        return Probe(status, [], False)
    try:
        models = served_models(host, port, api_key, max(timeout_s, 2.0))
    except (OSError, ValueError) as exc:
        return Probe(status, [], False, str(exc))
    return Probe(status, models, served_model in models)


def metrics(host: str, port: int, timeout_s: float = 0.5) -> dict[str, float]:
    """From `/metrics`: running and waiting requests and KV-cache usage (0–1), summed over engines."""
    try:
        status, body = http_get(host, port, "/metrics", timeout_s)
    except OSError:
        return {}
    if status != 200:
        return {}
    return parse_metrics(body.decode("utf-8", "replace"))


METRIC_NAMES = {
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:kv_cache_usage_perc": "kv_cache_usage",
    "vllm:gpu_cache_usage_perc": "kv_cache_usage",  # older name
}


def parse_metrics(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        key = METRIC_NAMES.get(name)
        if key is None:
            continue
        try:
            value = float(line.rsplit(" ", 1)[1])
        except (IndexError, ValueError):
            continue
        values[key] = values.get(key, 0.0) + value
    return values


class LogFollower:
    """Reads what was appended to a log file since the last call; splits on \\n and \\r (progress bars)."""

    def __init__(self, path: Path, from_end: bool = False) -> None:
        self.path = Path(path)
        self.offset = 0
        self.partial = ""
        if from_end and self.path.exists():
            self.offset = self.path.stat().st_size

    def read_lines(self, max_bytes: int = 1 << 20) -> list[str]:
        try:
            with open(self.path, "rb") as handle:
                size = handle.seek(0, 2)
                if size < self.offset:  # truncated or replaced: start over
                    self.offset = 0
                if size == self.offset:
                    return []
                handle.seek(self.offset)
                chunk = handle.read(max_bytes)
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        text = self.partial + chunk.decode("utf-8", "replace")
        parts = re.split(r"\r\n|\n|\r", text)
        self.partial = parts.pop()
        return [p for p in parts if p.strip()]


TAIL_BLOCK_BYTES = 256 * 1024


def tail_lines(path: Path, count: int) -> list[str]:
    """The last COUNT non-empty lines of a log file (lines end at \\n, \\r\\n or \\r: progress bars). Reads
    backwards a block at a time until it has COUNT lines or the whole file, so a large COUNT gets them
    all, and a small one reads one block."""
    if count <= 0:
        return []
    try:
        with open(path, "rb") as handle:
            position = handle.seek(0, 2)
            blocks: list[bytes] = []
            seen = 0  # non-empty pieces read so far: at most one more than the whole lines among them
            while position > 0 and seen <= count:
                step = min(TAIL_BLOCK_BYTES, position)
                position -= step
                handle.seek(position)
                block = handle.read(step)
                blocks.append(block)
                seen += sum(1 for piece in re.split(rb"\r\n|\n|\r", block) if piece.strip())
    except FileNotFoundError:
        return []
    text = b"".join(reversed(blocks)).decode("utf-8", "replace")
    pieces = re.split(r"\r\n|\n|\r", text)
    if position > 0:
        pieces = pieces[1:]  # the first piece may be the end of a line that started before the block
    lines = [line for line in pieces if line.strip()]
    return lines[-count:]
