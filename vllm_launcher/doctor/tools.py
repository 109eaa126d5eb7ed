"""VL42x: tool-calling conformance of a running server (`doctor --tools`): will an agent's tool calls come
back as tool calls, streamed and not, at the client's prompt length?

One request per check, each judged on its own: tool_choice "auto", "required" and a named function, each
non-streamed and streamed (the deltas assembled as an OpenAI client does); two tools in one turn; a tool
result sent back; and "required" behind a system prompt of the client's size. Arguments must be JSON that
fits the declared schema. The judging is pure (`judge_check`), tested on answers written by hand; the HTTP
side (`run_checks`) records what came back.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from vllm_launcher.base.safe_text import printable
from vllm_launcher.doctor.findings import Finding, Rule
from vllm_launcher.doctor.live import excerpt, suggested_parser

TOOL_RULES: tuple[Rule, ...] = (
    Rule("VL420", "info", "live", "tool-calling check passed"),
    Rule("VL421", "error", "live", "tool call came back as text, not tool_calls"),
    Rule("VL422", "error", "live", "no tool call (or the wrong tool) where one was required"),
    Rule("VL423", "error", "live", "tool-call arguments are not JSON for the declared schema"),
    Rule("VL424", "error", "live", "a tool-calling request failed (HTTP error)"),
    Rule("VL425", "warning", "live", "the model answered without calling a tool (tool_choice auto)"),
    Rule("VL426", "warning", "live", "two tools asked for, fewer called"),
    Rule("VL427", "error", "live", "at the client's prompt length the tool request fails"),
)
_BY_CODE = {rule.code: rule for rule in TOOL_RULES}


def make_finding(code: str, message: str, fix: str = "", *, preset: str | None = None) -> Finding:
    return _BY_CODE[code].finding(message, fix, preset=preset)

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Get the current local time in a timezone.",
    "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}},
                   "required": ["timezone"]}}}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris? Call the get_weather tool."}]
ASK_BOTH = [{"role": "user", "content": "What is the weather in Paris, and what time is it in Tokyo? Call "
             "get_weather and get_time."}]
ROUND_TRIP = [*ASK_WEATHER,
              {"role": "assistant", "content": None, "tool_calls": [
                  {"id": "call_1", "type": "function",
                   "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
              {"role": "tool", "tool_call_id": "call_1", "content": "{\"weather\": \"sunny\", \"c\": 21}"}]
NAMED = {"type": "function", "function": {"name": "get_weather"}}
FILLER = ("You are a careful coding agent. Read the repository, plan the change, edit the files, run the "
          "tests, and report what you did. ")


@dataclass(frozen=True)
class Check:
    name: str
    tool_choice: Any
    stream: bool = False
    tools: tuple = (WEATHER,)
    messages: tuple = tuple(ASK_WEATHER)
    expect: str = "call"  # "call" (get_weather), "calls2" (both tools), "answer" (any 200 answer)
    prompt_tokens: int = 0  # pad the system prompt to about this many tokens


def checks(client_prompt_tokens: int | None = None) -> list[Check]:
    found = [Check("auto", "auto"), Check("auto, streamed", "auto", stream=True),
             Check("required", "required"), Check("required, streamed", "required", stream=True),
             Check("named get_weather", NAMED), Check("named get_weather, streamed", NAMED, stream=True),
             Check("two tools in one turn", "auto", tools=(WEATHER, TIME), messages=tuple(ASK_BOTH),
                   expect="calls2"),
             Check("tool result round trip", "auto", messages=tuple(ROUND_TRIP), expect="answer")]
    if client_prompt_tokens:
        found.append(Check(f"required at the client's prompt length ({client_prompt_tokens} tokens)",
                           "required", prompt_tokens=client_prompt_tokens))
    return found


@dataclass
class Answer:
    """What came back for one check: HTTP status, the assistant's content and tool calls (streamed deltas
    assembled), or the transport error."""

    status: int | None = None
    content: str = ""
    calls: list[dict] = field(default_factory=list)  # {"name", "arguments" (the raw string)}
    error: str = ""  # transport error, or the server's error message on a non-200
    broken_stream: str = ""  # a stream chunk that is not JSON
    finish_reason: str = ""


# --------------------------------------------------------------------------------------- judge (pure)


def _schema_problem(call: dict, tools: tuple) -> str | None:
    """Why a call's arguments do not fit its tool's schema (None: they do)."""
    schema = next((t["function"]["parameters"] for t in tools if t["function"]["name"] == call["name"]), None)
    if schema is None:
        return f"{call['name']!r} is not one of the tools offered"
    try:
        arguments = json.loads(call["arguments"] or "")
    except ValueError:
        return f"arguments {call['arguments'][:60]!r} are not JSON"
    if not isinstance(arguments, dict):
        return f"arguments {call['arguments'][:60]!r} are not a JSON object"
    missing = [k for k in schema.get("required", []) if k not in arguments]
    if missing:
        return f"arguments {call['arguments'][:60]!r} miss {', '.join(missing)}"
    wrong = [k for k, spec in schema.get("properties", {}).items()
             if k in arguments and spec.get("type") == "string" and not isinstance(arguments[k], str)]
    if wrong:
        return f"arguments {call['arguments'][:60]!r}: {', '.join(wrong)} must be a string"
    return None


def _looks_like_a_call(content: str) -> bool:
    return any(marker in content for marker in ("<tool_call>", "\"name\"", "get_weather", "[TOOL_CALLS]",
                                                "<TOOL_OUTPUT>", "<|python_tag|>"))


def judge_check(check: Check, answer: Answer, *, model: str, parser: str | None,
                preset: str | None = None) -> Finding:
    """One line for one check: what came back, and the fix when it is wrong."""
    def finding(code: str, what: str, fix: str = "") -> Finding:
        if answer.finish_reason == "length" and code in ("VL421", "VL422", "VL423"):
            what += " (cut off at max_tokens: the model never closed the call)"
        return make_finding(code, f"{check.name}: {what}", fix, preset=preset)

    suggested = suggested_parser(model, parser)
    parser_fix = (f"serve with --enable-auto-tool-choice --tool-call-parser {suggested} (a parser that "
                  f"matches {model}'s output format; preset: tool_calling)")
    if answer.error and answer.status is None:
        return finding("VL424", f"no answer ({answer.error})",
                       "check that the server is up (doctor --endpoint)")
    if answer.status != 200:
        return _http_failure(check, answer, finding, parser_fix)
    if answer.error and not answer.calls and not answer.content:
        return finding("VL424", f"200 but {answer.error}", "see the server's log (vllm-launch logs NAME)")
    if answer.broken_stream:
        return finding("VL423", f"a streamed chunk is {answer.broken_stream[:120]}", parser_fix)
    if check.expect == "answer":
        return finding("VL420", "200 with an answer after the tool result"
                       + (f" ({len(answer.calls)} more tool call(s))" if answer.calls else ""))
    if not answer.calls:
        return _judge_no_call(check, answer, finding, parser_fix)
    return _judge_calls(check, answer, finding, parser_fix)


def _judge_no_call(check: Check, answer: Answer, finding: Any, parser_fix: str) -> Finding:
    if answer.content and _looks_like_a_call(answer.content):
        return finding("VL421", f"the call came back as text in content ({answer.content[:60]!r})",
                       parser_fix)
    if check.tool_choice == "auto":
        return finding("VL425", f"no tool call, content {excerpt(answer.content, 60)!r}",
                       "the model chose not to call the tool: a model trained for tool calling, or "
                       "tool_choice \"required\" in the client")
    return finding("VL422", f"no tool call although tool_choice was {json.dumps(check.tool_choice)}",
                   parser_fix)


def _judge_calls(check: Check, answer: Answer, finding: Any, parser_fix: str) -> Finding:
    problems = [p for p in (_schema_problem(c, check.tools) for c in answer.calls) if p]
    if problems:
        return finding("VL423", problems[0], "a parser that matches the model's format; with tool_choice "
                       "required or named, vLLM's structured outputs keep the arguments valid")
    names = [c["name"] for c in answer.calls]
    if check.expect == "calls2" and len(set(names)) < 2:
        return finding("VL426", f"only {', '.join(names)} called",
                       "the model makes one call per turn: agents must loop on tool results")
    if isinstance(check.tool_choice, dict) and check.tool_choice["function"]["name"] not in names:
        return finding("VL422", f"called {', '.join(names)} instead of get_weather", parser_fix)
    shown = ", ".join(f"{c['name']}({c['arguments'][:40]})" for c in answer.calls)
    return finding("VL420", f"tool_calls {shown}")


def _http_failure(check: Check, answer: Answer, finding: Any, parser_fix: str) -> Finding:
    message = answer.error[:160]
    if check.prompt_tokens and answer.status == 400 and "context" in message.lower():
        return finding("VL427", f"HTTP {answer.status} ({message})",
                       f"raise max_model_len above the client's prompt ({check.prompt_tokens} tokens) plus "
                       "the answer, or shorten the client's system prompt")
    if answer.status == 400 and "tool choice" in message.lower():
        return finding("VL424", f"HTTP 400 ({message})", parser_fix)
    return finding("VL424", f"HTTP {answer.status} ({message})",
                   "see the server's log (vllm-launch logs NAME; doctor --log FILE explains known errors)")


# ------------------------------------------------------------------------------------------- HTTP side


def _payload(check: Check, model: str, filler_repeats: int) -> dict:
    messages = list(check.messages)
    if check.prompt_tokens:
        messages = [{"role": "system", "content": FILLER * filler_repeats}, *messages]
    payload: dict[str, Any] = {"model": model, "messages": messages, "tools": list(check.tools),
                               "tool_choice": check.tool_choice, "max_tokens": 96, "temperature": 0}
    if check.stream:
        payload["stream"] = True
    return payload


MAX_PROMPT_TOKENS = 1_000_000  # the check sends a system prompt this long: ~4 MB of text at most
MAX_BODY_BYTES = 4 << 20  # an answer of at most 96 tokens: anything larger is not one
CHECK_DEADLINE_S = 60.0  # per check, whole answer (a server that drips a byte a second is cut off)
SHAPE_ERRORS = (KeyError, IndexError, TypeError, AttributeError, ValueError, OverflowError)


def _arguments(value: Any) -> str:
    """Arguments as the OpenAI format sends them: a JSON string. Anything else is kept visibly wrong."""
    if isinstance(value, str):
        return value
    return f"<{type(value).__name__}, not a JSON string>" if value is not None else ""


def assemble_stream(lines: list[str]) -> Answer:
    """An SSE body as an OpenAI client assembles it: content pieces joined, tool-call deltas merged by
    index (name once, arguments concatenated). A chunk of the wrong shape is reported, never raised."""
    answer = Answer(status=200)
    calls: dict[int, dict] = {}
    for line in lines:
        if not line.startswith("data:") or line.strip() == "data: [DONE]":
            continue
        try:
            chunk = json.loads(line[5:])
        except ValueError:
            answer.broken_stream = answer.broken_stream or f"not JSON: {line[5:].strip()[:160]!r}"
            continue
        try:
            _merge_chunk(chunk, answer, calls)
        except SHAPE_ERRORS:
            answer.broken_stream = answer.broken_stream or f"of the wrong shape: {line[5:].strip()[:160]!r}"
    answer.calls = [calls[i] for i in sorted(calls)]
    if not answer.calls and not answer.content and not answer.broken_stream and not answer.error:
        answer.error = "the stream carried no content and no tool call"
    return answer


def _merge_chunk(chunk: Any, answer: Answer, calls: dict[int, dict]) -> None:
    if not isinstance(chunk, dict) or not chunk.get("choices"):
        if isinstance(chunk, dict) and chunk.get("error"):
            answer.error = str(chunk["error"])[:200]
        return
    choice = chunk["choices"][0]
    answer.finish_reason = str(choice.get("finish_reason") or answer.finish_reason)
    delta = choice.get("delta") or {}
    content = delta.get("content")
    answer.content += content if isinstance(content, str) else ""
    for piece in delta.get("tool_calls") or []:
        index = piece.get("index", 0)
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError("tool call index is not an integer")
        call = calls.setdefault(index, {"name": "", "arguments": ""})
        function = piece.get("function") or {}
        call["name"] = call["name"] or str(function.get("name") or "")
        call["arguments"] += _arguments(function.get("arguments"))


def _answer_of(body: Any) -> Answer:
    try:
        message = body["choices"][0]["message"]
        finish = str(body["choices"][0].get("finish_reason") or "")
        calls = [{"name": str((c.get("function") or {}).get("name") or ""),
                  "arguments": _arguments((c.get("function") or {}).get("arguments"))}
                 for c in message.get("tool_calls") or []]
        content = message.get("content")
    except SHAPE_ERRORS:
        return Answer(status=200, error=f"an answer of the wrong shape ({str(body)[:100]!r})")
    return Answer(status=200, content=content if isinstance(content, str) else "", calls=calls,
                  finish_reason=finish)


def _error_text(body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message", error))
        return str(body.get("message", error))
    return str(body)


def _read(response: Any, deadline: float) -> bytes:
    """The body, at most MAX_BODY_BYTES and no later than DEADLINE (TimeoutError otherwise)."""
    data = bytearray()
    for piece in response.iter_bytes():
        data += piece
        if len(data) > MAX_BODY_BYTES:
            raise OverflowError(f"an answer larger than {MAX_BODY_BYTES >> 20} MiB")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no whole answer within {CHECK_DEADLINE_S:g} s")
    return bytes(data)


def ask(client: Any, url: str, payload: dict, deadline_s: float = CHECK_DEADLINE_S) -> Answer:
    """One check's request; never raises for HTTP trouble or a bad answer (it is recorded)."""
    import httpx

    deadline = time.monotonic() + deadline_s
    try:
        with client.stream("POST", url, json=payload) as response:
            text = _read(response, deadline).decode("utf-8", errors="replace")
            status = response.status_code
            location = response.headers.get("location", "")
    except (httpx.HTTPError, TimeoutError, OverflowError) as exc:
        return Answer(error=f"{type(exc).__name__}: {exc}")
    if 300 <= status < 400:
        return Answer(status=status, error=f"a redirect to {location[:120]!r}: point --endpoint at the "
                      "server itself")
    if status != 200:
        return Answer(status=status, error=_error_text(_json(text)))
    if payload.get("stream"):
        return assemble_stream(text.splitlines())
    body = _json(text)
    if not isinstance(body, dict):
        return Answer(status=200, error=f"the answer is not JSON ({text[:80]!r})")
    return _answer_of(body)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _filler_repeats(client: Any, root: str, model: str, tokens: int) -> int:
    """How many FILLERs make about TOKENS tokens: the server's own /tokenize when it has one, else ~4
    characters a token."""
    import math

    per_filler = len(FILLER) / 4
    try:
        response = client.post(f"{root}/tokenize", json={"model": model, "prompt": FILLER * 10})
        count = response.json()["count"] if response.status_code == 200 else None
        if isinstance(count, (int, float)) and math.isfinite(count) and 10 <= count <= 100_000:
            per_filler = count / 10
    except Exception:  # any trouble: the rule of thumb
        pass
    return max(1, round(tokens / per_filler))


def run_checks(base_url: str, model: str, *, api_key: str | None = None, parser: str | None = None,
               client_prompt_tokens: int | None = None, preset: str | None = None,
               timeout_s: float = 30.0) -> list[Finding]:
    """Every check against the server at BASE_URL (…/v1 or its root), one finding each; once a server stops
    answering, the remaining checks are not tried (one line says so)."""
    import httpx

    root = base_url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    findings = []
    with httpx.Client(timeout=timeout_s, headers=headers) as client:
        # A preset's value is bounded too (the command line's is checked before)
        client_prompt_tokens = min(client_prompt_tokens or 0, MAX_PROMPT_TOKENS) or None
        repeats = _filler_repeats(client, root, model, client_prompt_tokens) if client_prompt_tokens else 0
        for check in checks(client_prompt_tokens):
            started = time.perf_counter()
            answer = ask(client, f"{root}/v1/chat/completions", _payload(check, model, repeats))
            found = judge_check(check, answer, model=model, parser=parser, preset=preset)
            found.message = printable(found.message) + f" [{time.perf_counter() - started:.1f} s]"
            found.fix = printable(found.fix)
            findings.append(found)
            if answer.status is None:
                findings.append(make_finding("VL424", "the remaining tool checks were not tried: the server "
                                             "stopped answering", preset=preset))
                break
    return findings

