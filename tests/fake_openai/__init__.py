"""A fake OpenAI-compatible server for doctor's live checks: the tool-call response formats a random-weight
model cannot produce on demand. A real HTTP server on 127.0.0.1 (a free port), run in a thread.

Modes (what /v1/chat/completions answers to a non-streaming request):
  native        message.tool_calls with get_weather
  json_block    content with a ```json block holding the call
  tool_output   content with <TOOL_OUTPUT>{...}</TOOL_OUTPUT>
  tool_call     content with <tool_call>{...}</tool_call> (hermes format, unparsed)
  inline_json   content with bare inline JSON
  auto_400      HTTP 400 '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser ...'
  duplicate     plain content written twice
  plain         plain content, no tool call
  rambling      hundreds of newlines, then a long plain answer (what a random-weight model writes)
  unhealthy     /health answers 503
  chat_500      every chat request (streaming too) answers HTTP 500
Streaming requests get three SSE chunks ("Hel", "lo", [DONE]).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CALL = {"name": "get_weather", "arguments": {"city": "Paris"}}
CONTENT = {
    "json_block": "I will look it up.\n```json\n" + json.dumps(CALL) + "\n```",
    "tool_output": "<TOOL_OUTPUT>" + json.dumps(CALL) + "</TOOL_OUTPUT>",
    "tool_call": "<tool_call>\n" + json.dumps(CALL) + "\n</tool_call>",
    "inline_json": "Calling the tool now: " + json.dumps(CALL) + " and waiting.",
    "duplicate": ("The weather in Paris is sunny and mild today. "
                  "The weather in Paris is sunny and mild today."),
    "plain": "It is sunny in Paris.",
    "rambling": "\n" * 300 + "It is sunny in Paris,\n\n\t and " + "quite warm " * 40,
}
AUTO_400 = ('"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set')


class FakeOpenAI:
    """`with FakeOpenAI("native") as server: server.base_url` -> http://127.0.0.1:PORT/v1"""

    def __init__(self, mode: str = "native", model: str = "demo-model", max_model_len: int = 2048,
                 api_key: str | None = None) -> None:
        self.mode, self.model, self.max_model_len, self.api_key = mode, model, max_model_len, api_key
        self.requests: list[dict] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self._server.server_address[1]
        self.root = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.root}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_Handler,), {"fake": self})


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAI  # set by FakeOpenAI._handler on a subclass

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        fake = self.fake
        if fake.api_key is None:
            return True
        if self.headers.get("Authorization") == f"Bearer {fake.api_key}":
            return True
        self._send(401, {"error": "Unauthorized"})
        return False

    def do_GET(self) -> None:
        fake = self.fake
        if self.path == "/health":
            self._send(503 if fake.mode == "unhealthy" else 200, {})
        elif self.path == "/v1/models":
            if self._authorized():
                self._send(200, {"object": "list", "data": [
                    {"id": fake.model, "object": "model", "max_model_len": fake.max_model_len}]})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        fake = self.fake
        length = int(self.headers.get("Content-Length", 0))
        request = json.loads(self.rfile.read(length) or b"{}")
        fake.requests.append(request)
        if self.path != "/v1/chat/completions":
            self._send(404, {"error": "not found"})
            return
        if not self._authorized():
            return
        if fake.mode == "chat_500":
            self._send(500, {"object": "error", "message": "EngineCore encountered an issue",
                             "type": "InternalServerError", "code": 500})
            return
        if request.get("stream"):
            self._stream()
            return
        if fake.mode == "auto_400" and request.get("tool_choice") == "auto":
            self._send(400, {"object": "error", "message": AUTO_400, "type": "BadRequestError",
                             "code": 400})
            return
        message: dict = {"role": "assistant", "content": CONTENT.get(fake.mode, "")}
        if fake.mode == "native":
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": json.dumps(CALL["arguments"])}}]}
        self._send(200, {"id": "x", "object": "chat.completion", "model": fake.model, "choices": [
            {"index": 0, "message": message,
             "finish_reason": "tool_calls" if fake.mode == "native" else "stop"}]})

    def _stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in ("Hel", "lo"):
            chunk = {"choices": [{"index": 0, "delta": {"content": piece}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
