"""A fake `python -m vllm.entrypoints.openai.api_server` for the supervise tests.

Put `tests/fake_vllm` first on PYTHONPATH and the product runs this instead of vLLM, with no test-only
switch in the product. It behaves like vLLM 0.32 where the supervisor cares: log lines of the start-up
phases, the port closed until ready, `/health`, `/v1/models`, `/v1/chat/completions`, `/metrics`, an
"EngineCore" child process that maps a `/dev/shm/psm_*` segment and survives a SIGKILL of its parent.

The tests drive it with environment variables:
  FAKE_VLLM_MODE         comma-separated: slow_start, exit_during_start, crash_after_ready, never_ready,
                         ignore_sigterm (like vLLM while starting), ignore_signals (SIGINT and SIGTERM),
                         orphan_children (children ignore signals; one leaves the process group),
                         flapping_health (503 bursts after ready), unhealthy (503 for good after ready),
                         crash_mid_stream (exit after two streamed chunks), crash_mid_response (exit after
                         half a JSON body)
  FAKE_VLLM_STREAM_DELAY_S / FAKE_VLLM_STREAM_TOKENS  "stream": true answers: seconds between chunks, chunks
  VLLM_SERVER_DEV_MODE=1 /sleep, /wake_up, /is_sleeping as vLLM's dev endpoints (requests fail while asleep;
                         /sleep fails without --enable-sleep-mode)
  FAKE_VLLM_START_S      seconds from start to ready (default 0.2)
  FAKE_VLLM_ERROR        the error line printed by exit_during_start
  FAKE_VLLM_CRASH_AFTER_S  crash_after_ready: seconds of service before exiting 1 (default 0.5)
  FAKE_VLLM_FLAP_OK_S / FAKE_VLLM_FLAP_BAD_S  flapping_health: seconds healthy / seconds 503
  FAKE_VLLM_READY_FILE   write the epoch time at which /health started answering 200
  FAKE_VLLM_PORT_TAKEN_ONCE  a path: the first start (no file there yet) creates it and fails to bind
                         as if someone took the port after it was picked
  FAKE_VLLM_DIST_STORE   "1": like vLLM 0.32's worker, create the gloo file store $TMPDIR/vllm_dist_<hex>
                         (~2 KB, left behind on exit) and log `distributed_init_method=file://...`
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = set(filter(None, os.environ.get("FAKE_VLLM_MODE", "").split(",")))
DEFAULT_ERROR = ("ValueError: max_num_batched_tokens (2048) is smaller than max_model_len (4096). This "
                 "effectively limits the maximum sequence length to max_num_batched_tokens and makes vLLM "
                 "reject longer sequences. Please increase max_num_batched_tokens or decrease max_model_len.")


def log(text: str) -> None:
    stamp = time.strftime("%m-%d %H:%M:%S")
    print(f"INFO {stamp} [fake_vllm] {text}", flush=True)


def make_shm(tag: str) -> tuple[str, mmap.mmap]:
    """A /dev/shm/psm_* segment mapped by this process, as vLLM's shared-memory broadcast makes."""
    name = f"psm_fake{os.getpid()}{tag}"
    fd = os.open(f"/dev/shm/{name}", os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, 4096)
    mapped = mmap.mmap(fd, 4096)
    os.close(fd)
    return name, mapped


def engine_main() -> None:
    """The child "EngineCore": maps a shm segment; stops on SIGINT/SIGTERM (unlinking it) unless told to
    ignore them; lives on after a SIGKILL of its parent, like vLLM's."""
    name, _mapped = make_shm("e")
    stubborn = "orphan_children" in MODES

    def stop(_signum: int, _frame: object) -> None:
        if os.path.exists(f"/dev/shm/{name}"):
            os.unlink(f"/dev/shm/{name}")
        os._exit(0)

    if stubborn:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if os.environ.get("FAKE_VLLM_ROLE") == "engine":
            # A grandchild that leaves the process group, as a daemonized helper would.
            subprocess.Popen([sys.executable, "-m", __spec__.name],
                             env={**os.environ, "FAKE_VLLM_ROLE": "stray"}, start_new_session=True)
    else:
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
    while True:
        time.sleep(3600)


class State:
    ready_at = 0.0
    served = "fake"
    sleeping = False
    sleep_mode = False  # --enable-sleep-mode


def health_status() -> int:
    if "unhealthy" in MODES:
        return 503
    if "flapping_health" in MODES:
        ok_s = float(os.environ.get("FAKE_VLLM_FLAP_OK_S", "1"))
        bad_s = float(os.environ.get("FAKE_VLLM_FLAP_BAD_S", "1"))
        phase = (time.time() - State.ready_at) % (ok_s + bad_s)
        return 200 if phase < ok_s else 503
    return 200


class Handler(BaseHTTPRequestHandler):
    # As uvicorn: keep-alive, and streams in chunked encoding (a server that dies mid-stream is then an
    # incomplete body, not an ordinary end).
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: object) -> None:
        log(f'"{self.command} {self.path}" {args[1] if len(args) > 1 else ""}')

    def _send(self, status: int, body: object, content_type: str = "application/json",
              extra_headers: dict[str, str] | None = None) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (extra_headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        key = os.environ.get("VLLM_API_KEY")
        return not key or self.headers.get("Authorization") == f"Bearer {key}"

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(health_status(), "")
        elif self.path == "/v1/models":
            if not self._authorized():
                self._send(401, {"error": "Unauthorized"})
                return
            self._send(200, {"object": "list", "data": [
                {"id": State.served, "object": "model", "owned_by": "vllm", "max_model_len": 2048}]})
        elif self.path == "/is_sleeping" and os.environ.get("VLLM_SERVER_DEV_MODE") == "1":
            self._send(200, {"is_sleeping": State.sleeping})
        elif self.path == "/metrics":
            self._send(200, "# HELP vllm:num_requests_running x\n"
                            f'vllm:num_requests_running{{engine="0",model_name="{State.served}"}} 1.0\n'
                            f'vllm:num_requests_waiting{{engine="0",model_name="{State.served}"}} 2.0\n'
                            f'vllm:kv_cache_usage_perc{{engine="0",model_name="{State.served}"}} 0.25\n',
                       "text/plain")
        else:
            self._send(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        path = self.path.split("?", 1)[0]
        if path in ("/sleep", "/wake_up") and os.environ.get("VLLM_SERVER_DEV_MODE") == "1":
            if not State.sleep_mode:  # vLLM: the engine was not built for sleeping
                self._send(500, {"error": {"message": "Sleep mode is not enabled",
                                           "type": "InternalServerError"}})
                return
            State.sleeping = path == "/sleep"
            log(f"dev endpoint {self.path}: sleeping={State.sleeping}")
            self._send(200, "")
            return
        if path not in ANSWERS:
            self._send(404, {"detail": "Not Found"})
            return
        if not self._authorized():
            self._send(401, {"error": "Unauthorized"})
            return
        if State.sleeping:
            self._send(500, {"error": {"message": "the engine is asleep", "type": "InternalServerError"}})
            return
        if request.get("model") != State.served and path.startswith("/v1"):
            self._send(404, {"error": {"message": f"The model `{request.get('model')}` does not exist.",
                                       "type": "NotFoundError", "param": None, "code": 404}})
            return
        if request.get("max_tokens") == -1:
            self._send(400, {"error": {"message": "max_tokens must be at least 1, got -1.",
                                       "type": "BadRequestError", "param": None, "code": 400}},
                       extra_headers={"X-Fake-Upstream": "kept"})
            return
        if request.get("stream"):
            self._stream(request)
            return
        if "crash_mid_response" in MODES:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"id": "chatcmpl-fake", "choi')
            self.wfile.flush()
            os._exit(1)
        self._send(200, ANSWERS[path](request), extra_headers={"X-Fake-Upstream": "kept"})

    def _stream(self, request: dict) -> None:
        """Server-sent events, one token per FAKE_VLLM_STREAM_DELAY_S, as vLLM streams them."""
        delay = float(os.environ.get("FAKE_VLLM_STREAM_DELAY_S", "0.05"))
        count = int(os.environ.get("FAKE_VLLM_STREAM_TOKENS", "10"))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        try:
            for index in range(count):
                if "crash_mid_stream" in MODES and index == 2:
                    os._exit(1)
                chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                         "model": request.get("model"),
                         "choices": [{"index": 0, "delta": {"content": f"tok{index} "}}],
                         "sent_at": time.time()}
                send(f"data: {json.dumps(chunk)}\n\n".encode())
                time.sleep(delay)
            send(b"data: [DONE]\n\n")
            time.sleep(float(os.environ.get("FAKE_VLLM_EOF_DELAY_S", "0")))  # the end of the body comes late
            send(b"")
            log(f"stream finished: {count} chunks")
        except (BrokenPipeError, ConnectionResetError):
            log("stream cancelled: the client went away")


def _chat(request: dict) -> dict:
    return {"id": "chatcmpl-fake", "object": "chat.completion", "model": request.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "hello from fake vllm"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}


ANSWERS = {
    "/v1/chat/completions": _chat,
    "/v1/completions": lambda r: {"id": "cmpl-fake", "object": "text_completion", "model": r.get("model"),
                                  "choices": [{"index": 0, "text": "fake", "finish_reason": "stop"}]},
    "/v1/embeddings": lambda r: {"object": "list", "model": r.get("model"),
                                 "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}]},
    "/v1/responses": lambda r: {"id": "resp-fake", "object": "response", "model": r.get("model"),
                                "output": [{"type": "message",
                                            "content": [{"type": "output_text", "text": "fake"}]}]},
    "/tokenize": lambda r: {"tokens": [1, 2, 3], "count": 3, "max_model_len": 2048},
    "/detokenize": lambda r: {"prompt": "fake text"},
}


def set_signal_handlers() -> None:
    if "ignore_sigterm" in MODES or "ignore_signals" in MODES:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if "ignore_signals" in MODES:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGINT, lambda *_: sys.exit(0))


def make_dist_store(worker_pid: int) -> None:
    # vllm.utils.network_utils.get_file_store_init_method(); vLLM never removes the file.
    store = f"{tempfile.gettempdir()}/vllm_dist_{uuid.uuid4().hex}"
    with open(store, "wb") as handle:
        handle.write(b"\0" * 2048)
    print(f"(Worker pid={worker_pid}) INFO {time.strftime('%m-%d %H:%M:%S')} [parallel_state.py:1906] "
          f"world_size=1 rank=0 local_rank=0 distributed_init_method=file://{store} backend=gloo",
          flush=True)


def main() -> None:
    role = os.environ.get("FAKE_VLLM_ROLE")
    if role in ("engine", "stray"):
        engine_main()
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--served-model-name")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--enable-sleep-mode", action="store_true")
    args, _unknown = parser.parse_known_args()
    State.served = args.served_model_name or args.model
    State.sleep_mode = args.enable_sleep_mode
    set_signal_handlers()
    log(f"vLLM API server version 0.0.0+fake; args: model={args.model}")
    print(f"WARNING {time.strftime('%m-%d %H:%M:%S')} [fake_vllm] fake warning: the fake server is not vLLM",
          flush=True)
    log(f"secret VLLM_API_KEY is {'set' if os.environ.get('VLLM_API_KEY') else 'unset'}")
    engine = subprocess.Popen([sys.executable, "-m", __spec__.name],
                              env={**os.environ, "FAKE_VLLM_ROLE": "engine"})
    log(f"Initializing a V1 LLM engine (v0.0.0+fake) with config: model={args.model!r}")
    if os.environ.get("FAKE_VLLM_DIST_STORE") == "1":
        make_dist_store(engine.pid)
    if "exit_during_start" in MODES:
        time.sleep(0.1)
        print(os.environ.get("FAKE_VLLM_ERROR", DEFAULT_ERROR), flush=True)
        engine.terminate()
        sys.exit(1)
    start_s = float(os.environ.get("FAKE_VLLM_START_S", "0.2"))
    phases = [f"Starting to load model {args.model}...", "Loading weights took 0.01 seconds",
              "Model loading took 0.0 GiB memory and 0.01 seconds",
              ("CPU KV cache size: 1,048,576 tokens, Maximum concurrency for 2,048 tokens per request: "
               "512.00x"),
              "Warming up model for the compilation...",
              "init engine (profile, create kv cache, warmup model) took 0.10 s"]
    for line in phases:
        log(line)
        time.sleep(start_s / len(phases))
    if "never_ready" in MODES:
        while True:
            log("still loading...")
            time.sleep(0.2)
    try:
        taken_once = os.environ.get("FAKE_VLLM_PORT_TAKEN_ONCE")
        if taken_once and not os.path.exists(taken_once):
            open(taken_once, "w").close()
            raise OSError(98, "Address already in use")
        server = ThreadingHTTPServer((args.host, args.port), Handler)
    except OSError as exc:
        print(f"OSError: [Errno {exc.errno}] error while attempting to bind on address "
              f"('{args.host}', {args.port}): address already in use", flush=True)
        engine.terminate()
        sys.exit(1)
    log(f"Starting vLLM server on http://{args.host}:{args.port}")
    State.ready_at = time.time()
    ready_file = os.environ.get("FAKE_VLLM_READY_FILE")
    if ready_file:
        with open(ready_file, "w") as handle:
            handle.write(repr(State.ready_at))
    log("Application startup complete.")
    if "crash_after_ready" in MODES:
        delay_s = float(os.environ.get("FAKE_VLLM_CRASH_AFTER_S", "0.5"))
        threading.Timer(delay_s, lambda: (print("RuntimeError: fake engine died", flush=True),
                                          os._exit(1))).start()
    try:
        server.serve_forever(poll_interval=0.05)
    except SystemExit:
        pass
    finally:
        engine.terminate()
        engine.wait()


if __name__ == "__main__":
    main()
