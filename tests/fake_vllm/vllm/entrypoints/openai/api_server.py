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
  FAKE_VLLM_HOLD_STOP_FILE  a path: on SIGINT or SIGTERM, log "stop requested" and exit only once the file
                         exists (a server that takes its time to stop, released by the test)

The gateway's protocols, answered in each one's shape with what the server received (`received`: the
path with its query, the headers a client may set, the body) so tests can check it passed unchanged:
/v1/messages (Anthropic: stream and not, tool_use when get_weather is offered), /v1/messages/count_tokens,
/v1/responses (ids remembered: GET/DELETE /v1/responses/{id}, POST .../cancel; streamed as the Responses
API's events), /v1/audio/transcriptions and /translations (multipart), rerank/score/pooling/classify.
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
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
from typing import ClassVar

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
    responses: ClassVar[dict[str, dict]] = {}  # Responses API: id -> the response


SEEN_HEADERS = ("anthropic-version", "anthropic-beta", "authorization", "x-api-key", "user-agent",
                "content-type", "openai-beta", "x-stainless-lang")

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
        elif self.path.startswith("/v1/responses/"):
            found = State.responses.get(self.path.split("?", 1)[0].removeprefix("/v1/responses/"))
            if found is None:
                self._send(404, {"error": {"message": "Response not found.", "type": "NotFoundError",
                                           "param": None, "code": 404}})
            else:
                self._send(200, {**found, "served_by": State.served, "received": self._received(None)})
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

    def _received(self, body: object) -> dict:
        return {"path": self.path, "method": self.command, "body": body,
                "headers": {k: self.headers[k] for k in SEEN_HEADERS if k in self.headers}}

    def _form(self, raw: bytes) -> dict:
        """A multipart/form-data body: each field's text, and the file's size and digest."""
        message = email.parser.BytesParser().parsebytes(
            f"Content-Type: {self.headers.get('Content-Type')}\r\n\r\n".encode() + raw)
        fields: dict = {}
        for part in message.get_payload() if message.is_multipart() else []:
            name = part.get_param("name", header="content-disposition")
            data = part.get_payload(decode=True) or b""
            if part.get_filename():
                fields[name] = {"filename": part.get_filename(), "bytes": len(data),
                                "sha256": hashlib.sha256(data).hexdigest()}
            else:
                fields[name] = data.decode()
        return fields

    def _unknown_model(self, path: str, model: object) -> None:
        message = f"The model `{model}` does not exist."
        self._send(404, {"type": "error", "error": {"type": "not_found_error", "message": message}}
                   if path.startswith("/v1/messages") else
                   {"error": {"message": message, "type": "NotFoundError", "param": None, "code": 404}})

    def _cancel(self, response_id: str) -> None:
        found = State.responses.get(response_id)
        if found is None:
            self._send(404, {"error": {"message": "not found", "type": "NotFoundError", "code": 404}})
        else:
            self._send(200, {**found, "status": "cancelled", "served_by": State.served})

    def do_DELETE(self) -> None:
        response_id = self.path.split("?", 1)[0].removeprefix("/v1/responses/")
        if self.path.startswith("/v1/responses/") and State.responses.pop(response_id, None) is not None:
            self._send(200, {"id": response_id, "object": "response.deleted", "deleted": True,
                             "served_by": State.served})
        else:
            self._send(404, {"error": {"message": f"Response with id '{response_id}' not found.",
                                       "type": "NotFoundError", "param": None, "code": 404}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        multipart = self.headers.get("Content-Type", "").startswith("multipart/form-data")
        request = self._form(raw) if multipart else json.loads(raw or b"{}")
        if path.startswith("/v1/responses/") and path.endswith("/cancel"):
            self._cancel(path.removeprefix("/v1/responses/").removesuffix("/cancel"))
            return
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
            self._unknown_model(path, request.get("model"))
            return
        if request.get("max_tokens") == -1:
            self._send(400, {"error": {"message": "max_tokens must be at least 1, got -1.",
                                       "type": "BadRequestError", "param": None, "code": 400}},
                       extra_headers={"X-Fake-Upstream": "kept"})
            return
        if request.get("stream"):
            STREAMS.get(path, Handler._stream)(self, request)
            return
        if "crash_mid_response" in MODES:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"id": "chatcmpl-fake", "choi')
            self.wfile.flush()
            os._exit(1)
        answer = ANSWERS[path](request)
        if path not in PLAIN_ANSWERS:
            answer["received"] = self._received(request)
        self._send(200, answer, extra_headers={"X-Fake-Upstream": "kept"})

    def _events(self) -> tuple:
        """Start a chunked event stream; returns (send one event, the delay between tokens, the count)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(event: str | None, data: object) -> None:
            text = (f"event: {event}\n" if event else "") + f"data: {json.dumps(data)}\n\n"
            chunk = text.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()

        return (send, float(os.environ.get("FAKE_VLLM_STREAM_DELAY_S", "0.05")),
                int(os.environ.get("FAKE_VLLM_STREAM_TOKENS", "10")))

    def _end_events(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _stream_messages(self, request: dict) -> None:
        """Anthropic's Messages stream, as vLLM's /v1/messages sends it."""
        send, delay, count = self._events()
        try:
            message = {"id": "msg_fake", "type": "message", "role": "assistant",
                       "model": request.get("model"), "content": [], "stop_reason": None,
                       "usage": {"input_tokens": 3, "output_tokens": 0}, "received": self._received(request)}
            send("message_start", {"type": "message_start", "message": message})
            tools = _weather_tools(request)
            for index in range(count):
                if "crash_mid_stream" in MODES and index == 2:
                    os._exit(1)
                if index == 0:
                    send("content_block_start", {"type": "content_block_start", "index": 0,
                                                 "content_block": {"type": "text", "text": ""}})
                send("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "text_delta", "text": f"tok{index} "},
                                             "sent_at": time.time()})
                time.sleep(delay)
            send("content_block_stop", {"type": "content_block_stop", "index": 0})
            if tools:
                send("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
                    "type": "tool_use", "id": "toolu_fake", "name": tools[0]["name"], "input": {}}})
                send("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {
                    "type": "input_json_delta", "partial_json": '{"city": "Paris"}'}})
                send("content_block_stop", {"type": "content_block_stop", "index": 1})
            send("message_delta", {"type": "message_delta", "usage": {"output_tokens": count},
                                   "delta": {"stop_reason": "tool_use" if tools else "end_turn",
                                             "stop_sequence": None}})
            send("message_stop", {"type": "message_stop"})
            self._end_events()
            log(f"stream finished: {count} chunks")
        except (BrokenPipeError, ConnectionResetError):
            log("stream cancelled: the client went away")

    def _stream_responses(self, request: dict) -> None:
        """The Responses API's event stream (what Codex reads), the response remembered by its id."""
        send, delay, count = self._events()
        response = _response(request)
        response["received"] = self._received(request)
        try:
            started = {**response, "status": "in_progress", "output": []}
            send("response.created", {"type": "response.created", "sequence_number": 0, "response": started})
            item = {"id": "msg_fake", "type": "message", "status": "in_progress", "role": "assistant",
                    "content": []}
            send("response.output_item.added", {"type": "response.output_item.added", "sequence_number": 1,
                                                "output_index": 0, "item": item})
            for index in range(count):
                if "crash_mid_stream" in MODES and index == 2:
                    os._exit(1)
                send("response.output_text.delta", {"type": "response.output_text.delta",
                                                    "item_id": "msg_fake", "output_index": 0,
                                                    "content_index": 0,
                                                    "sequence_number": 2 + index, "delta": f"tok{index} ",
                                                    "sent_at": time.time()})
                time.sleep(delay)
            send("response.output_item.done", {"type": "response.output_item.done", "output_index": 0,
                                               "sequence_number": 2 + count, "item": response["output"][0]})
            send("response.completed", {"type": "response.completed", "sequence_number": 3 + count,
                                        "response": response})
            self._end_events()
            log(f"stream finished: {count} chunks")
        except (BrokenPipeError, ConnectionResetError):
            log("stream cancelled: the client went away")

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


def _response(request: dict) -> dict:
    """A completed Responses API answer with a fresh id, remembered for GET /v1/responses/{id}."""
    response_id = f"resp_{uuid.uuid4().hex}"
    text = {"type": "output_text", "text": "fake", "annotations": []}
    response = {"id": response_id, "object": "response", "created_at": int(time.time()),
                "status": "completed", "model": request.get("model"), "served_by": State.served,
                "output": [{"type": "message", "id": "msg_fake", "status": "completed", "role": "assistant",
                            "content": [text]}],
                "usage": {"input_tokens": 3, "output_tokens": 1, "total_tokens": 4}}
    State.responses[response_id] = response
    return dict(response)


def _weather_tools(request: dict) -> list[dict]:
    """The tools the fake calls: get_weather only (an agent's own tools, Claude Code's Bash or Task, are
    never called, so that one prompt of a real agent ends with its text)."""
    return [tool for tool in request.get("tools") or [] if tool.get("name") == "get_weather"]


def _message(request: dict) -> dict:
    """Anthropic's Messages answer: a tool_use block when tools are offered."""
    tools = _weather_tools(request)
    content: list[dict] = [{"type": "text", "text": "hello from fake vllm"}]
    if tools:
        content.append({"type": "tool_use", "id": "toolu_fake", "name": tools[0]["name"],
                        "input": {"city": "Paris"}})
    return {"id": "msg_fake", "type": "message", "role": "assistant", "model": request.get("model"),
            "content": content, "stop_reason": "tool_use" if tools else "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 4}}


def _pooled(request: dict) -> dict:
    return {"id": "pool-fake", "object": "list", "model": request.get("model"),
            "data": [{"index": 0, "relevance_score": 0.5, "score": 0.5, "data": [0.1]}]}


def _transcript(request: dict) -> dict:
    return {"text": "fake transcript"}


ANSWERS = {
    "/v1/chat/completions": _chat,
    "/v1/completions": lambda r: {"id": "cmpl-fake", "object": "text_completion", "model": r.get("model"),
                                  "choices": [{"index": 0, "text": "fake", "finish_reason": "stop"}]},
    "/v1/embeddings": lambda r: {"object": "list", "model": r.get("model"),
                                 "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}]},
    "/v1/responses": _response,
    "/tokenize": lambda r: {"tokens": [1, 2, 3], "count": 3, "max_model_len": 2048},
    "/detokenize": lambda r: {"prompt": "fake text"},
    "/v1/messages": _message,
    "/v1/messages/count_tokens": lambda r: {"input_tokens": 7},
    "/v1/audio/transcriptions": _transcript,
    "/v1/audio/translations": _transcript,
    **dict.fromkeys(("/rerank", "/v1/rerank", "/v2/rerank", "/score", "/v1/score", "/pooling", "/classify",
                     "/v2/embed"), _pooled),
}
PLAIN_ANSWERS = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/tokenize", "/detokenize"}
STREAMS = {"/v1/messages": Handler._stream_messages, "/v1/responses": Handler._stream_responses}


def set_signal_handlers() -> None:
    hold = os.environ.get("FAKE_VLLM_HOLD_STOP_FILE")
    if hold:
        def held_stop(signum: int, _frame: object) -> None:
            log(f"stop requested (signal {signum}): holding until {hold} exists")
            while not os.path.exists(hold):
                time.sleep(0.02)
            log("stop released")
            sys.exit(0)

        signal.signal(signal.SIGINT, held_stop)
        signal.signal(signal.SIGTERM, held_stop)
        return
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
