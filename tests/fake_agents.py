"""A fake backend for the real agent CLIs (`codex exec`, `claude -p`, `opencode run`, `aider --message`): a
real HTTP server on 127.0.0.1 that speaks the three protocols they use, answers every prompt with ANSWER,
and records each request (method, path with its query, the headers that matter, the JSON body).

  POST /v1/responses            OpenAI Responses, streamed as SSE events (Codex) or one JSON object
  POST /v1/messages[?beta=true] Anthropic Messages, streamed or not (Claude Code); /count_tokens too
  POST /v1/chat/completions     OpenAI chat, streamed (chunks, then [DONE]) or not (opencode, aider)
  GET  /v1/models               the one model, with its max_model_len
  HEAD / and GET /              200 (Claude Code checks that the server is there)
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = "ZEBRA-42 is the answer"
HEADERS = ("authorization", "x-api-key", "anthropic-version", "anthropic-beta", "content-type", "accept",
           "user-agent")


class FakeAgentBackend:
    """`with FakeAgentBackend("demo") as server: server.root` -> http://127.0.0.1:PORT"""

    def __init__(self, model: str = "demo", max_model_len: int = 131072, *, host: str = "127.0.0.1",
                 port: int = 0, log_path: str | None = None) -> None:
        self.model, self.max_model_len, self.log_path = model, max_model_len, log_path
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self.port = self._server.server_address[1]
        self.root = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeAgentBackend:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def posts(self, path_prefix: str) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if r["method"] == "POST" and r["path"].startswith(path_prefix)]

    def _record(self, entry: dict) -> None:
        with self._lock:
            self.requests.append(entry)
            if self.log_path:  # another process's view (the server the gateway started)
                with open(self.log_path, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(entry) + "\n")

    def _handler(self) -> type[BaseHTTPRequestHandler]:  # noqa: C901 (one small method per route)
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _entry(self, body: object = None) -> dict:
                headers = {h: self.headers.get(h) for h in HEADERS if self.headers.get(h) is not None}
                return {"method": self.command, "path": self.path, "body": body, "headers": headers}

            def _json(self, status: int, data: object) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _sse(self, events: list[tuple[str | None, object]]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                for name, data in events:
                    text = data if isinstance(data, str) else json.dumps(data)
                    self.wfile.write(((f"event: {name}\n" if name else "") + f"data: {text}\n\n").encode())
                    self.wfile.flush()
                self.close_connection = True

            def do_HEAD(self) -> None:
                backend._record(self._entry())
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                backend._record(self._entry())
                if self.path.startswith("/v1/models"):
                    self._json(200, {"object": "list", "data": [
                        {"id": backend.model, "object": "model", "owned_by": "fake",
                         "max_model_len": backend.max_model_len}]})
                elif self.path in ("/", "/health"):
                    self._json(200, {"ok": True})
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {"_raw": raw[:200].decode(errors="replace")}
                backend._record(self._entry(body))
                path = self.path.split("?")[0]
                stream = bool(isinstance(body, dict) and body.get("stream"))
                model = body.get("model", backend.model) if isinstance(body, dict) else backend.model
                if path == "/v1/responses":
                    self._responses(model, stream)
                elif path == "/v1/messages/count_tokens":
                    self._json(200, {"input_tokens": 42})
                elif path == "/v1/messages":
                    self._messages(model, stream)
                elif path == "/v1/chat/completions":
                    self._chat(model, stream)
                else:
                    self._json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

            def _responses(self, model: str, stream: bool) -> None:
                message = {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
                           "content": [{"type": "output_text", "text": ANSWER, "annotations": []}]}
                usage = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
                         "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 15}
                response = {"id": "resp_1", "object": "response", "created_at": int(time.time()),
                            "status": "completed", "model": model, "output": [message], "usage": usage}
                if not stream:
                    self._json(200, response)
                    return
                started = {**response, "status": "in_progress", "output": [], "usage": None}
                item = {**message, "status": "in_progress", "content": []}
                part = {"type": "output_text", "text": "", "annotations": []}
                head, tail = ANSWER[:5], ANSWER[5:]
                at = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
                delta, text_done, part_added = ("response.output_text.delta", "response.output_text.done",
                                                "response.content_part.added")
                events: list[tuple[str | None, object]] = [
                    ("response.created", {"type": "response.created", "response": started}),
                    ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                                    "item": item}),
                    (part_added, {"type": part_added, **at, "part": part}),
                    *((delta, {"type": delta, **at, "delta": piece}) for piece in (head, tail)),
                    (text_done, {"type": text_done, **at, "text": ANSWER}),
                    ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0,
                                                   "item": message}),
                    ("response.completed", {"type": "response.completed", "response": response})]
                self._sse(events)

            def _messages(self, model: str, stream: bool) -> None:
                usage = {"input_tokens": 10, "output_tokens": 5}
                if not stream:
                    self._json(200, {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                                     "content": [{"type": "text", "text": ANSWER}], "stop_reason": "end_turn",
                                     "stop_sequence": None, "usage": usage})
                    return
                start = {"id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [],
                         "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 10,
                                                                              "output_tokens": 1}}
                self._sse([
                    ("message_start", {"type": "message_start", "message": start}),
                    ("content_block_start", {"type": "content_block_start", "index": 0,
                                             "content_block": {"type": "text", "text": ""}}),
                    *(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "text_delta", "text": piece}})
                      for piece in (ANSWER[:5], ANSWER[5:])),
                    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                                          "stop_sequence": None},
                                       "usage": {"output_tokens": 5}}),
                    ("message_stop", {"type": "message_stop"})])

            def _chat(self, model: str, stream: bool) -> None:
                created = int(time.time())
                usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
                if not stream:
                    self._json(200, {"id": "chatcmpl-1", "object": "chat.completion", "created": created,
                                     "model": model, "usage": usage, "choices": [
                                         {"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": ANSWER}}]})
                    return

                def chunk(delta: dict, finish: str | None = None, **extra: object) -> dict:
                    choice = {"index": 0, "delta": delta, "finish_reason": finish}
                    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": created,
                            "model": model, "choices": [choice], **extra}

                self._sse([(None, chunk({"role": "assistant", "content": ""})),
                           *((None, chunk({"content": piece})) for piece in (ANSWER[:5], ANSWER[5:])),
                           (None, chunk({}, "stop")),
                           (None, {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": created,
                                   "model": model, "choices": [], "usage": usage}),
                           (None, "[DONE]")])

        return Handler


if __name__ == "__main__":  # for trying a client by hand: python tests/fake_agents.py MODEL
    import sys

    with FakeAgentBackend(sys.argv[1] if len(sys.argv) > 1 else "demo") as server:
        print(server.root, flush=True)
        try:
            while True:
                time.sleep(1)
                for entry in server.requests[len(getattr(server, "_shown", [])):]:
                    print(json.dumps(entry)[:300], flush=True)
                server._shown = list(server.requests)  # type: ignore[attr-defined]
        except KeyboardInterrupt:
            pass
