"""VL4xx: checks of a running OpenAI-compatible server: /health, /v1/models, a tool-calling probe, time to
first token. Two steps: `fetch` does the HTTP (httpx, imported there only) and records every answer as an
`Exchange`; `judge` turns recorded exchanges into findings, a pure function (as are
`classify_tool_response` and `repeated_span`), tested on exchanges written by hand.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import dataclass

from vllm_launcher.doctor.findings import Finding, Rule, Severity

# The live checks' codes (doctor.registry lists them with the others).
LIVE_RULES: tuple[Rule, ...] = (
    Rule("VL400", "info", "live", "what the server serves"),
    Rule("VL401", "error", "live", "server not reachable"),
    Rule("VL402", "error", "live", "/health does not answer 200"),
    Rule("VL403", "error", "live", "the expected model is not served"),
    Rule("VL404", "warning", "live", "served max_model_len differs from the preset"),
    Rule("VL405", "info", "live", "native tool calls work"),
    Rule("VL406", "error", "live", "tool call came back as text in `content`"),
    Rule("VL407", "error", "live", "HTTP 400: \"auto\" tool choice needs the tool-calling flags"),
    Rule("VL408", "warning", "live", "the response repeats its own content"),
    Rule("VL409", "info", "live", "time to first token (streaming)"),
    Rule("VL410", "error", "live", "HTTP 401: API key missing or wrong"),
    Rule("VL411", "info", "live", "the model answered without calling the tool"),
    Rule("VL412", "warning", "live", "chat request failed"),
)
_BY_CODE = {rule.code: rule for rule in LIVE_RULES}


def make_finding(code: str, message: str, fix: str = "", *, preset: str | None = None,
                 severity: Severity | None = None) -> Finding:
    return _BY_CODE[code].finding(message, fix, preset=preset, severity=severity)


PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
PROBE_MESSAGES = [{"role": "user", "content": "What is the weather in Paris? Call the get_weather tool."}]

TEXT_FORMATS = {
    "json_block": "a ```json block",
    "tool_output_tags": "<TOOL_OUTPUT> tags",
    "tool_call_tags": "<tool_call> tags",
    "inline_json": "bare inline JSON",
}
_JSON_BLOCK = re.compile(r"```(?:json)?\s*(\{[\s\S]*?\})\s*```")
_TOOL_OUTPUT = re.compile(r"<TOOL_OUTPUT>\s*([\s\S]*?)\s*(?:</TOOL_OUTPUT>|$)", re.IGNORECASE)
_TOOL_CALL = re.compile(r"<tool_call>\s*([\s\S]*?)\s*(?:</tool_call>|$)")
_NAME_KEY = re.compile(r'"name"\s*:\s*"([^"]+)"')


@dataclass(frozen=True)
class ToolProbe:
    """How a server answered the tool probe. kind: native | json_block | tool_output_tags | tool_call_tags |
    inline_json | auto_tool_choice_400 | unauthorized | no_tool_call | http_error."""

    kind: str
    detail: str = ""
    content: str = ""


def _inline_call(text: str) -> str | None:
    """A JSON object with a "name" key written inline in the text (the guide's
    `{"name": ..., "arguments":`)."""
    start = text.find("{")
    while start != -1:
        depth = 0
        for end in range(start, len(text)):
            if text[end] == "{":
                depth += 1
            elif text[end] == "}":
                depth -= 1
                if depth == 0:
                    try:
                        value = json.loads(text[start:end + 1])
                    except ValueError:
                        break
                    if isinstance(value, dict) and "name" in value:
                        return str(value["name"])
                    break
        start = text.find("{", start + 1)
    return None


def classify_tool_response(status: int, body: object) -> ToolProbe:
    """Classify one /v1/chat/completions answer to a request with one tool (pure)."""
    text_body = body if isinstance(body, str) else json.dumps(body)
    if status == 400 and "tool choice requires" in text_body:
        return ToolProbe("auto_tool_choice_400", _error_message(body))
    if status == 401:
        return ToolProbe("unauthorized", _error_message(body))
    if status != 200 or not isinstance(body, dict):
        return ToolProbe("http_error", f"HTTP {status}: {_error_message(body)[:200]}")
    try:
        message = body["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        return ToolProbe("http_error", "response has no choices[0].message")
    calls = message.get("tool_calls") or []
    content = message.get("content") or ""
    if calls:
        names = ", ".join(str(c.get("function", {}).get("name")) for c in calls if isinstance(c, dict))
        return ToolProbe("native", names, content)
    for kind, regex in (("tool_call_tags", _TOOL_CALL), ("tool_output_tags", _TOOL_OUTPUT),
                        ("json_block", _JSON_BLOCK)):
        match = regex.search(content)
        if match:
            name = _NAME_KEY.search(match.group(1))
            return ToolProbe(kind, name.group(1) if name else "", content)
    inline = _inline_call(content)
    if inline is not None:
        return ToolProbe("inline_json", inline, content)
    return ToolProbe("no_tool_call", "", content)


def _error_message(body: object) -> str:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message", error))
        return str(error)
    return str(body)


def excerpt(text: str, limit_chars: int = 80) -> str:
    """TEXT on one line (whitespace runs collapsed), cut at a word boundary near LIMIT_CHARS with "..."."""
    flat = " ".join(text.split())
    if len(flat) <= limit_chars:
        return flat
    cut = flat[:limit_chars].rsplit(" ", 1)[0] or flat[:limit_chars]
    return cut + "..."


def repeated_span(text: str, min_chars: int = 20) -> str | None:
    """The part of `text` that is written twice in a row (the guide's "duplicate content"), or None."""
    normal = " ".join(text.split())
    if len(normal) < 2 * min_chars:
        return None
    half = len(normal) // 2
    for cut in range(max(min_chars, half - 2), min(len(normal), half + 3)):
        first, second = normal[:cut].strip(), normal[cut:].strip()
        if first and first == second:
            return first
    pieces = [p.strip() for p in re.split(r"(?<=[.!?\n])\s+", text) if len(p.strip()) >= min_chars]
    for before, after in itertools.pairwise(pieces):
        if before == after:
            return before
    return None


def suggested_parser(model: str, preset_parser: str | None) -> str:
    from vllm_launcher.doctor.rules_preset import expected_parser

    if preset_parser:
        return preset_parser
    guess = expected_parser(model)
    return guess[0] if guess else "hermes"


# ---------------------------------------------------------------------------------------------- HTTP


def check_endpoint_url(url: str) -> str:
    """URL itself when it names an HTTP server (http(s)://HOST[:PORT][/v1]); else ConfigError (exit 2)."""
    from urllib.parse import urlsplit

    from vllm_launcher.base.errors import ConfigError

    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number in 0-65535)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{url!r} is not a server URL: use http://HOST:PORT (e.g. http://127.0.0.1:8000, "
                          "with or without /v1)", field="--endpoint")
    return url


def _root(base_url: str) -> str:
    url = base_url.rstrip("/")
    return url.removesuffix("/v1")


# ------------------------------------------------------------------------------- recorded exchanges


@dataclass
class Exchange:
    """One request of the live checks and what came back: a status and body, or the transport error.
    Streaming requests also record the seconds to the first token (None: no token came)."""

    request: str
    status: int | None = None
    body: object = None  # parsed JSON when it was JSON, else the text
    error: str = ""  # "ConnectError: ..." when nothing answered
    first_token_s: float | None = None


@dataclass
class Exchanges:
    """Everything the live checks asked a server, in order; the later ones only when the earlier passed."""

    root: str
    health: Exchange | None = None
    models: Exchange | None = None
    tool_probe: Exchange | None = None
    stream: Exchange | None = None
    model: str | None = None  # the model the chat requests used
    api_key_sent: bool = False


@dataclass(frozen=True)
class Expectations:
    """What the preset (if any) says the server should be."""

    preset: str | None = None
    model: str | None = None
    max_model_len: int | None = None
    parser: str | None = None


def served_models(models: Exchange | None) -> dict[str, int | None] | None:
    """{model id: max_model_len} from a /v1/models answer; None when it is not a model list."""
    if models is None or models.status != 200 or not isinstance(models.body, dict):
        return None
    data = models.body.get("data")
    if not isinstance(data, list):
        return None
    return {str(entry.get("id")): entry.get("max_model_len") for entry in data if isinstance(entry, dict)}


def model_to_probe(models: Exchange | None, expected: str | None) -> str | None:
    """The expected model when it is served, else the first one served (else EXPECTED, to be reported)."""
    served = served_models(models) or {}
    return expected if expected in served else next(iter(served), expected)


# ------------------------------------------------------------------------------------- fetch (HTTP)


def check_endpoint(base_url: str, *, preset: str | None = None, expected_model: str | None = None,
                   expected_max_model_len: int | None = None, api_key: str | None = None,
                   parser: str | None = None, timeout_s: float = 120.0,
                   tool_probe: bool = True) -> list[Finding]:
    """Live checks against a server (http://host:port, with or without /v1). Never raises for HTTP trouble:
    every problem is a finding. The HTTP is `fetch`; the verdicts are `judge`, a pure function."""
    expect = Expectations(preset, expected_model, expected_max_model_len, parser)
    return judge(fetch(base_url, expect, api_key=api_key, timeout_s=timeout_s, tool_probe=tool_probe), expect)


def fetch(base_url: str, expect: Expectations, *, api_key: str | None = None, timeout_s: float = 120.0,
          tool_probe: bool = True) -> Exchanges:
    """Ask the server what the checks need (httpx, imported here only): /health; if 200, /v1/models; if
    that lists a model, a tool-calling request and a streaming one. Records every answer; judges nothing."""
    import httpx

    root = _root(base_url)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    found = Exchanges(root, api_key_sent=bool(api_key))
    with httpx.Client(timeout=httpx.Timeout(timeout_s, connect=5.0), headers=headers) as client:
        found.health = _get(client, httpx, f"{root}/health")
        if found.health.status != 200:
            return found
        found.models = _get(client, httpx, f"{root}/v1/models")
        found.model = model_to_probe(found.models, expect.model)
        if served_models(found.models) is None or not found.model:
            return found
        if tool_probe:
            payload = {"model": found.model, "messages": PROBE_MESSAGES, "tools": [PROBE_TOOL],
                       "tool_choice": "auto", "max_tokens": 64, "temperature": 0}
            found.tool_probe = _post(client, httpx, f"{root}/v1/chat/completions", payload)
        found.stream = _stream(client, httpx, f"{root}/v1/chat/completions", found.model)
    return found


def _body(response: object) -> object:
    try:
        return response.json()  # type: ignore[attr-defined]
    except ValueError:
        return response.text  # type: ignore[attr-defined]


def _get(client: object, httpx: object, url: str) -> Exchange:
    try:
        response = client.get(url)  # type: ignore[attr-defined]
    except httpx.HTTPError as exc:  # type: ignore[attr-defined]
        return Exchange(f"GET {url}", error=f"{type(exc).__name__}: {exc}")
    return Exchange(f"GET {url}", response.status_code, _body(response))


def _post(client: object, httpx: object, url: str, payload: dict) -> Exchange:
    try:
        response = client.post(url, json=payload)  # type: ignore[attr-defined]
    except httpx.HTTPError as exc:  # type: ignore[attr-defined]
        return Exchange(f"POST {url}", error=f"{type(exc).__name__}: {exc}")
    return Exchange(f"POST {url}", response.status_code, _body(response))


def _stream(client: object, httpx: object, url: str, model: str) -> Exchange:
    payload = {"model": model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8,
               "stream": True, "temperature": 0}
    started = time.perf_counter()
    exchange = Exchange(f"POST {url} (stream)")
    try:
        with client.stream("POST", url, json=payload) as response:  # type: ignore[attr-defined]
            exchange.status = response.status_code
            if response.status_code != 200:
                return exchange
            for line in response.iter_lines():
                if not line.startswith("data:") or line.strip() == "data: [DONE]":
                    continue
                try:
                    delta = json.loads(line[5:])["choices"][0].get("delta", {})
                except (ValueError, KeyError, IndexError, TypeError):
                    continue
                if delta.get("content") or delta.get("tool_calls"):
                    exchange.first_token_s = time.perf_counter() - started
                    return exchange
    except httpx.HTTPError as exc:  # type: ignore[attr-defined]
        exchange.error = f"{type(exc).__name__}: {exc}"
    return exchange


# ------------------------------------------------------------------------------------- judge (pure)


def judge(found: Exchanges, expect: Expectations) -> list[Finding]:
    """The findings of recorded exchanges (pure: tests feed it exchanges written by hand)."""
    findings: list[Finding] = []
    preset = expect.preset

    def add(code: str, message: str, fix: str = "") -> None:
        findings.append(make_finding(code, message, fix, preset=preset))

    root = found.root
    health = found.health
    if health is None or health.status is None:
        error = health.error if health is not None else "not asked"
        add("VL401", f"{root} is not reachable ({error})",
            "start it (vllm-launch up PRESET) or check host and port; during start-up vLLM refuses "
            "connections until the model is loaded")
        return findings
    if health.status != 200:
        add("VL402", f"GET {root}/health answered {health.status}"
            + (" (the engine has died)" if health.status == 503 else ""),
            "restart the server (vllm-launch restart PRESET) and read its log "
            "(vllm-launch doctor --log FILE)")
        return findings
    models = found.models
    if models is not None and models.status == 401:
        add("VL410", "GET /v1/models answered 401: the server wants an API key"
            + (" and the one given was refused" if found.api_key_sent else " and none was given"),
            "export the variable named by the preset's api_key_env (or VLLM_API_KEY for --endpoint)")
        return findings
    served = served_models(models)
    if served is None:
        status = models.status if models is not None else None
        add("VL412", f"GET /v1/models answered {status} without a model list", "")
        return findings
    listing = ", ".join(f"{name} (max_model_len {length})" for name, length in served.items()) or "nothing"
    add("VL400", f"{root} is healthy and serves {listing}")
    model = found.model
    if expect.model and expect.model not in served:
        add("VL403", f"{expect.model!r} is not served; the server lists: {', '.join(served) or 'nothing'}",
            f"point the client at {next(iter(served), '?')!r}, or restart the server with "
            f"--model {expect.model} (or set served_model_name)")
    served_len = served.get(model) if model else None
    if expect.max_model_len and served_len and served_len != expect.max_model_len:
        add("VL404", f"{model} is served with max_model_len {served_len}, the preset says "
            f"{expect.max_model_len}: the running server was started with other settings",
            "restart it from the preset (vllm-launch restart PRESET)")
    if not model:
        return findings
    if found.tool_probe is not None:
        findings.extend(judge_tool_probe(found.tool_probe, model, expect))
    if found.stream is not None:
        findings.extend(judge_stream(found.stream, model, preset))
    return findings


def judge_tool_probe(exchange: Exchange, model: str, expect: Expectations) -> list[Finding]:
    preset = expect.preset
    if exchange.status is None:
        return [make_finding("VL412", f"the tool-calling probe failed ({exchange.error})",
                             "check the server's log", preset=preset)]
    probe = classify_tool_response(exchange.status, exchange.body)
    parser_name = suggested_parser(model, expect.parser)
    restart = (f"restart with --enable-auto-tool-choice --tool-call-parser {parser_name} (preset: "
               f"tool_calling.enabled: true, tool_calling.parser: {parser_name})")
    findings = []
    if probe.kind == "native":
        findings.append(make_finding("VL405",
                                     f"the tool probe came back as native tool_calls ({probe.detail})",
                                     preset=preset))
    elif probe.kind in TEXT_FORMATS:
        findings.append(make_finding(
            "VL406", f"the tool call came back as text in `content` ({TEXT_FORMATS[probe.kind]}"
            + (f", tool {probe.detail}" if probe.detail else "") + ") instead of tool_calls: clients need a "
            "fallback parser (slower, less reliable)",
            f"{restart}; if the flags are already set, the parser does not match the model's format (the "
            "guide's parser table)", preset=preset))
    elif probe.kind == "auto_tool_choice_400":
        findings.append(make_finding("VL407",
                                     f"a request with tool_choice \"auto\" got HTTP 400: {probe.detail}",
                                     restart, preset=preset))
    elif probe.kind == "unauthorized":
        findings.append(make_finding("VL410", "the chat request got HTTP 401",
                                     "export the variable named by the preset's api_key_env", preset=preset))
    elif probe.kind == "no_tool_call":
        findings.append(make_finding("VL411", "the model answered the tool probe without calling the tool "
                                     f"(\"{excerpt(probe.content)}\")", "", preset=preset))
    else:
        findings.append(make_finding("VL412", f"the tool-calling probe failed: {probe.detail}",
                                     "check the server's log", preset=preset))
    span = repeated_span(probe.content)
    if span:
        findings.append(make_finding(
            "VL408", f"the response repeats itself (\"{excerpt(span, 60)}\" twice)",
            "enable the client's output deduplication (Victor does it for vLLM by default); else lower the "
            "temperature or add a repetition penalty (the guide's \"Duplicate content\")", preset=preset))
    return findings


def judge_stream(exchange: Exchange, model: str, preset: str | None) -> list[Finding]:
    if exchange.error:
        return [make_finding("VL412", f"streaming chat request failed ({exchange.error})",
                             "check the server's log", preset=preset)]
    if exchange.status != 200:
        return [make_finding("VL412", f"streaming chat request answered HTTP {exchange.status}",
                             "check the server's log", preset=preset)]
    if exchange.first_token_s is None:
        return [make_finding("VL412", "the streaming response carried no token", "check the server's log",
                             preset=preset)]
    return [make_finding("VL409", f"time to first token: {exchange.first_token_s:.2f} s (streaming, {model})",
                         preset=preset)]
