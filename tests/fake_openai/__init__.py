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
Tool-calling conformance (`doctor --tools`), streamed and not, honouring tool_choice:
  native        (above) get_weather as tool_calls; streamed as deltas split mid-arguments; a named
                tool_choice gets that tool; after a tool result, a plain answer
  parallel      like native, and both get_weather and get_time when both tools are offered
  missing_args  tool_calls whose arguments are "{}"
  broken_stream streamed tool-call chunks that are not JSON (non-streamed: like native)
  context_400   like native, but HTTP 400 (context length) when a system prompt is sent
Other modes stream their content in two pieces; a plain request without tools gets "Hel", "lo".
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
TOOL_MODES = {"native", "parallel", "missing_args", "broken_stream", "context_400"}
AUTO_400 = ('"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set')


class FakeOpenAI:
    """`with FakeOpenAI("native") as server: server.base_url` -> http://127.0.0.1:PORT/v1"""

    def __init__(self, mode: str = "native", model: str = "demo-model", max_model_len: int = 2048,
                 api_key: str | None = None) -> None:
        self.mode, self.model, self.max_model_len, self.api_key = mode, model, max_model_len, api_key
        self.requests: list[dict] = []  # the POSTed bodies
        self.gets: list[str] = []  # the GET paths
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
        fake.gets.append(self.path)
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
        if fake.mode == "auto_400" and request.get("tool_choice") == "auto":
            self._send(400, {"object": "error", "message": AUTO_400, "type": "BadRequestError",
                             "code": 400})
            return
        if fake.mode == "context_400" and any(m.get("role") == "system" for m in request.get("messages", [])):
            self._send(400, {"object": "error", "type": "BadRequestError", "code": 400, "message":
                             "This model's maximum context length is 2048 tokens. However, you requested "
                             "7000 tokens in the messages."})
            return
        calls = self._calls(request)
        if request.get("stream"):
            self._stream(request, calls)
            return
        message: dict = {"role": "assistant", "content": CONTENT.get(fake.mode, "")}
        if calls:
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": arguments}}
                for i, (name, arguments) in enumerate(calls)]}
        elif fake.mode in TOOL_MODES:
            message = {"role": "assistant", "content": "It is sunny in Paris, 21 C."}
        self._send(200, {"id": "x", "object": "chat.completion", "model": fake.model, "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}]})

    def _calls(self, request: dict) -> list[tuple[str, str]]:
        """The tool calls this mode answers REQUEST with: (name, arguments JSON)."""
        mode = self.fake.mode
        offered = [t["function"]["name"] for t in request.get("tools") or []]
        answered = any(m.get("role") == "tool" for m in request.get("messages", []))
        if mode not in TOOL_MODES or not offered or answered:
            return []
        choice = request.get("tool_choice")
        names = [choice["function"]["name"]] if isinstance(choice, dict) else offered[:1]
        if mode == "parallel" and not isinstance(choice, dict):
            names = offered
        arguments = {"get_weather": {"city": "Paris"}, "get_time": {"timezone": "Asia/Tokyo"}}
        return [(name, "{}" if mode == "missing_args" else json.dumps(arguments.get(name, {})))
                for name in names]

    def _stream(self, request: dict, calls: list[tuple[str, str]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        chunks: list[object] = []
        if calls and self.fake.mode == "broken_stream":
            chunks = ['{"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"name"']
        elif calls:
            for i, (name, arguments) in enumerate(calls):
                half = len(arguments) // 2
                chunks.append({"tool_calls": [{"index": i, "id": f"call_{i}", "type": "function",
                                               "function": {"name": name, "arguments": arguments[:half]}}]})
                chunks.append({"tool_calls": [{"index": i, "function": {"arguments": arguments[half:]}}]})
        else:
            text = (CONTENT.get(self.fake.mode) or "Hello") if request.get("tools") else "Hello"
            chunks = [{"content": text[:3]}, {"content": text[3:]}]
        for delta in chunks:
            data = delta if isinstance(delta, str) else json.dumps(
                {"choices": [{"index": 0, "delta": delta}]})
            self.wfile.write(f"data: {data}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
