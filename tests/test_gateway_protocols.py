"""Every protocol vLLM serves, through a real `vllm-launch gateway` to fake vLLM servers (tests/fake_vllm):
the request shapes of the real clients (Claude Code's Messages with ?beta=true, Codex's streamed
Responses, the OpenAI SDK's multipart transcription, ...) reach the server unchanged but for the model
name, answers come back in the protocol's shape, streams unbuffered; the gateway's own errors in
OpenAI's or Anthropic's shape; response ids routed to the server that made them; admin routes never
forwarded; bounded metrics labels; a request that arrives while its server stops; the shutdown's drain.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import test_gateway
from conftest import cli, wait_for
from test_gateway import HARDWARE, preset, small, status

from vllm_launcher.gateway import protocols

gateways = test_gateway.gateways  # the fixture: real gateway processes, checked for leftovers at the end
CLAUDE = "claude-sonnet-4-5"
TOOLS_ANTHROPIC = [{"name": "get_weather", "description": "The weather in a city.",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                     "required": ["city"]}}]
# Claude Code 2.1's request, as it sends it (AGENT-CLIENTS.md): ?beta=true, its headers, system blocks with
# cache_control, metadata, tools, streaming.
CLAUDE_CODE_HEADERS = {"anthropic-version": "2023-06-01", "anthropic-beta": "claude-code-20250219",
                       "Authorization": "Bearer any", "user-agent": "claude-cli/2.1.0 (external, cli)",
                       "x-stainless-lang": "js"}


def claude_code_body(stream: bool) -> dict:
    return {"model": CLAUDE, "max_tokens": 32000, "stream": stream,
            "system": [{"type": "text", "text": "You are Claude Code.",
                        "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user",
                          "content": [{"type": "text", "text": "What is the weather in Paris?"}]}],
            "tools": TOOLS_ANTHROPIC, "metadata": {"user_id": "user_abc_session_1"}, "temperature": 1}


def codex_body() -> dict:
    """Codex CLI 0.171's streamed Responses request (wire_api = "responses")."""
    return {"model": "coder", "instructions": "You are Codex.", "stream": True, "store": False,
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
            "tools": [{"type": "function", "name": "shell", "strict": False,
                       "parameters": {"type": "object", "properties": {}}}],
            "tool_choice": "auto", "parallel_tool_calls": False, "reasoning": None, "include": []}


def events_of(lines: list[str]) -> list[tuple[str, dict]]:
    """(event name, data) of a server-sent event stream's lines."""
    found, name = [], ""
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and line != "data: [DONE]":
            found.append((name, json.loads(line[6:])))
            name = ""
    return found


def stream_lines(url: str, body: dict,
                 headers: dict | None = None) -> tuple[int, str, list[tuple[float, str]]]:
    """Status, content type and (arrival time, line) of a streamed POST."""
    arrivals = []
    with httpx.stream("POST", url, json=body, headers=headers or {}, timeout=60) as answer:
        for line in answer.iter_lines():
            arrivals.append((time.time(), line))
    return answer.status_code, answer.headers.get("content-type", ""), arrivals


def assert_unbuffered(arrivals: list[tuple[float, dict]]) -> None:
    """Each event reached the client before the server sent the last one (they are 0.3 s apart)."""
    assert len(arrivals) >= 3
    for arrived, _event in arrivals[:-1]:
        assert arrived < arrivals[-1][1]["sent_at"], "an event was held back until a later one was sent"


# ----------------------------------------------------------------------------------------- Anthropic


def test_claude_codes_messages_pass_unchanged_and_come_back_in_anthropics_shape(gateways, fake_env):
    preset(fake_env, "alpha", aliases=[CLAUDE, "coder"],
           env={"FAKE_VLLM_STREAM_DELAY_S": "0.3", "FAKE_VLLM_STREAM_TOKENS": "4"})
    gateway = gateways("alpha", "--idle", "0")
    sent = claude_code_body(stream=False)
    answer = httpx.post(f"{gateway.url}/v1/messages?beta=true", json=sent, headers=CLAUDE_CODE_HEADERS,
                        timeout=60)
    assert answer.status_code == 200, answer.text
    message = answer.json()
    assert message["type"] == "message" and message["role"] == "assistant"
    assert [block["type"] for block in message["content"]] == ["text", "tool_use"]
    assert message["stop_reason"] == "tool_use" and message["content"][1]["input"] == {"city": "Paris"}
    received = message["received"]
    assert received["path"] == "/v1/messages?beta=true"  # the query string kept
    assert received["body"] == {**sent, "model": "fake/alpha"}  # only the model rewritten
    for header in ("anthropic-version", "anthropic-beta", "user-agent", "x-stainless-lang"):
        assert received["headers"][header] == CLAUDE_CODE_HEADERS[header]
    assert "authorization" not in {k.lower() for k in received["headers"]}  # the client's key stays here

    counted = httpx.post(f"{gateway.url}/v1/messages/count_tokens?beta=true", headers=CLAUDE_CODE_HEADERS,
                         json={"model": CLAUDE, "messages": sent["messages"], "tools": TOOLS_ANTHROPIC},
                         timeout=30)
    assert counted.status_code == 200 and counted.json()["input_tokens"] == 7
    assert counted.json()["received"]["path"] == "/v1/messages/count_tokens?beta=true"

    code, content_type, lines = stream_lines(f"{gateway.url}/v1/messages?beta=true", claude_code_body(True),
                                             CLAUDE_CODE_HEADERS)
    assert code == 200 and content_type.startswith("text/event-stream")
    events = events_of([line for _, line in lines])
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert all(name == data["type"] for name, data in events)
    assert events[0][1]["message"]["received"]["body"] == {**claude_code_body(True), "model": "fake/alpha"}
    deltas = [(when, json.loads(line[6:])) for when, line in lines
              if line.startswith("data: ") and "sent_at" in line]
    assert_unbuffered(deltas)
    assert f"POST /v1/messages {CLAUDE} -> alpha 200" in gateway.log()


def test_the_anthropic_sdks_key_header_and_anthropics_error_shapes(gateways, fake_env):
    fake_env.update(GATEWAY_KEY="gateway-secret-1")
    preset(fake_env, "alpha", aliases=[CLAUDE])
    gateway = gateways("alpha", "--idle", "0", "--api-key-env", "GATEWAY_KEY")
    url = f"{gateway.url}/v1/messages"
    body = {"model": CLAUDE, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    refused = httpx.post(url, json=body, headers={"x-api-key": "wrong"}, timeout=30)
    assert refused.status_code == 401
    assert refused.json() == {"type": "error", "error": {
        "type": "authentication_error", "message": refused.json()["error"]["message"]}}
    for header in ({"x-api-key": "gateway-secret-1"}, {"Authorization": "Bearer gateway-secret-1"}):
        answer = httpx.post(url, json=body, headers={**header, "anthropic-version": "2023-06-01"}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert "x-api-key" not in answer.json()["received"]["headers"]  # not passed to the server

    key = {"x-api-key": "gateway-secret-1"}
    unknown = httpx.post(url, json={**body, "model": "claude-opus-4-1"}, headers=key, timeout=30)
    assert unknown.status_code == 404
    error = unknown.json()
    assert error["type"] == "error" and error["error"]["type"] == "not_found_error"
    assert "'claude-opus-4-1'" in error["error"]["message"] and CLAUDE in error["error"]["message"]
    not_json = httpx.post(url, content=b"{nope", headers=key, timeout=30)
    assert not_json.status_code == 400 and not_json.json()["error"]["type"] == "invalid_request_error"
    wrong_method = httpx.get(url, headers=key, timeout=30)
    assert wrong_method.status_code == 405 and wrong_method.json()["type"] == "error"
    assert "POST" in wrong_method.headers["allow"]
    nowhere = httpx.post(f"{gateway.url}/v1/messages/batches", json=body, headers=key, timeout=30)
    assert nowhere.status_code == 404 and nowhere.json()["error"]["type"] == "not_found_error"
    # Claude Code checks the base URL with HEAD /; no key needed, as for /health
    assert httpx.head(f"{gateway.url}/", timeout=10).status_code == 200
    assert httpx.get(f"{gateway.url}/", timeout=10).json()["status"] == "ok"


# ------------------------------------------------------------------------------------------- OpenAI


def test_codexs_streamed_responses_and_ids_routed_to_the_server_that_made_them(gateways, fake_env):
    preset(fake_env, "alpha", aliases=["coder"],
           env={"FAKE_VLLM_STREAM_DELAY_S": "0.3", "FAKE_VLLM_STREAM_TOKENS": "4"})
    preset(fake_env, "beta")
    gateway = gateways("alpha", "beta", "--idle", "0")
    code, content_type, lines = stream_lines(f"{gateway.url}/v1/responses", codex_body(),
                                             {"Authorization": "Bearer any", "openai-beta": "responses=v1"})
    assert code == 200 and content_type.startswith("text/event-stream")
    events = events_of([line for _, line in lines])
    assert [name for name, _ in events][:2] == ["response.created", "response.output_item.added"]
    assert events[-1][0] == "response.completed"
    created = events[0][1]["response"]
    assert created["received"]["body"] == {**codex_body(), "model": "fake/alpha"}
    assert created["received"]["headers"]["openai-beta"] == "responses=v1"
    assert_unbuffered([(when, json.loads(line[6:])) for when, line in lines
                       if line.startswith("data: ") and "sent_at" in line])
    streamed_id = created["id"]

    made = gateway.post("/v1/responses", {"model": "beta", "input": "hi", "background": True})
    assert made.status_code == 200, made.text
    beta_id = made.json()["id"]
    for response_id, served in ((streamed_id, "fake/alpha"), (beta_id, "fake/beta")):
        got = httpx.get(f"{gateway.url}/v1/responses/{response_id}?include=x", timeout=30)
        assert got.status_code == 200, got.text
        assert got.json()["served_by"] == served and got.json()["id"] == response_id
        assert got.json()["received"]["path"] == f"/v1/responses/{response_id}?include=x"
    cancelled = gateway.post(f"/v1/responses/{beta_id}/cancel", None)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["served_by"] == "fake/beta"
    deleted = httpx.delete(f"{gateway.url}/v1/responses/{beta_id}", timeout=30)
    assert deleted.status_code == 200 and deleted.json()["served_by"] == "fake/beta"
    again = httpx.get(f"{gateway.url}/v1/responses/{beta_id}", timeout=30)
    assert again.status_code == 404 and again.json()["error"]["code"] == "response_not_found"
    unknown = httpx.get(f"{gateway.url}/v1/responses/resp_never_made", timeout=30)
    assert unknown.status_code == 404 and "resp_never_made" in unknown.json()["error"]["message"]
    log = gateway.log()
    assert f"GET /v1/responses/{streamed_id} -> alpha 200" in log
    assert "GET /v1/responses/resp_never_made 404" in log


def test_multipart_transcriptions_are_routed_by_their_model_field(gateways, fake_env):
    preset(fake_env, "whisper", aliases=["whisper-1"])
    gateway = gateways("whisper", "--idle", "0")
    audio = bytes(range(256)) * 64  # not UTF-8: must pass byte for byte
    for path in ("/v1/audio/transcriptions", "/v1/audio/translations"):
        answer = httpx.post(f"{gateway.url}{path}", data={"model": "whisper-1", "language": "en"},
                            files={"file": ("a.wav", audio, "audio/wav")}, timeout=60)
        assert answer.status_code == 200, answer.text
        received = answer.json()["received"]["body"]
        assert received["model"] == "fake/whisper" and received["language"] == "en"
        import hashlib

        assert received["file"] == {"filename": "a.wav", "bytes": len(audio),
                                    "sha256": hashlib.sha256(audio).hexdigest()}
    unknown = httpx.post(f"{gateway.url}/v1/audio/transcriptions", data={"model": "whisper-9"},
                         files={"file": ("a.wav", audio, "audio/wav")}, timeout=30)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"


def test_pooling_routes_and_models_listing(gateways, fake_env):
    preset(fake_env, "ranker", aliases=["bge"], max_model_len=4096)
    gateway = gateways("ranker", "--idle", "0")
    for path in ("/rerank", "/v1/rerank", "/v2/rerank", "/score", "/v1/score", "/pooling", "/classify",
                 "/v2/embed"):
        answer = gateway.post(path, {"model": "bge", "query": "q", "documents": ["a"], "input": ["a"]})
        assert answer.status_code == 200, (path, answer.text)
        assert answer.json()["received"]["body"]["model"] == "fake/ranker", path
    listed = httpx.get(f"{gateway.url}/v1/models", timeout=10)
    entries = {entry["id"]: entry for entry in listed.json()["data"]}
    assert entries["bge"]["aliases"] == ["fake/ranker", "ranker"] and entries["bge"]["context_length"] == 4096
    assert entries["bge"]["type"] == "model"  # Anthropic's fields too
    assert entries["bge"]["state"] == "running"
    one = httpx.get(f"{gateway.url}/v1/models/fake/ranker", timeout=10)  # a name with '/'
    assert one.status_code == 200 and one.json()["preset"] == "ranker"
    assert httpx.get(f"{gateway.url}/v1/models/nope", timeout=10).status_code == 404
    assert "GET /v1/models 200" in gateway.log()


def test_the_gateways_errors_are_in_openais_shape_and_admin_routes_are_never_forwarded(gateways, fake_env):
    preset(fake_env, "alpha")
    gateway = gateways("alpha", "--idle", "0")
    assert gateway.chat("alpha").status_code == 200
    unknown_route = gateway.post("/v1/nope", {"model": "alpha"})
    assert unknown_route.status_code == 404 and set(unknown_route.json()["error"]) == {
        "message", "type", "param", "code"}
    wrong_method = httpx.get(f"{gateway.url}/v1/chat/completions", timeout=10)
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["type"] == "invalid_request_error"
    too_big = httpx.post(f"{gateway.url}/v1/chat/completions", content=b" " * ((64 << 20) + 1),
                         headers={"Content-Type": "application/json"}, timeout=60)
    assert too_big.status_code == 413 and "64 MiB" in too_big.json()["error"]["message"]
    server_log = Path(status(fake_env)["alpha"]["log"])
    for path in ("/sleep?level=1", "/wake_up", "/collective_rpc", "/reset_prefix_cache", "/update_weights",
                 "/load", "/start_profile", "/v1/load_lora_adapter"):
        refused = gateway.post(path, {"model": "alpha"})
        assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error", path
    text = server_log.read_text()
    assert "/sleep" not in text and "/collective_rpc" not in text and "/load" not in text
    log = gateway.log()
    assert "POST /v1/nope 404" in log and "GET /v1/chat/completions 405" in log
    assert "POST /v1/chat/completions 413" in log


# ------------------------------------------------------------------------------------------ fixes


def test_unknown_models_share_one_bounded_metrics_label(gateways, fake_env):
    preset(fake_env, "alpha")
    gateway = gateways("alpha", "--idle", "0")
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda i: gateway.chat(f"junk-{i}").status_code, range(200)))
    assert set(codes) == {404}
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    assert "junk-" not in text
    assert gateway.metric("vllm_launch_gateway_requests_total", model="(unknown)", status="404") == 200
    assert len(text) < 20_000


def test_a_request_for_a_server_being_stopped_waits_for_a_fresh_start(gateways, fake_env, tmp_path):
    """The idle stop has begun (the server holds its exit until the test releases it): a request arriving
    in that window is not forwarded into the dying server; it waits, then gets a new server."""
    release = tmp_path / "release-stop"
    preset(fake_env, "held", idle_timeout="1s", env={"FAKE_VLLM_HOLD_STOP_FILE": str(release)})
    gateway = gateways("held", "--idle", "0")
    assert gateway.chat("held").status_code == 200
    first = status(fake_env)["held"]
    first_log = Path(first["log"])
    wait_for(lambda: "stop requested" in first_log.read_text(), 30)  # the stop is under way
    assert gateway.state("held") == "stopping"
    with ThreadPoolExecutor(1) as pool:
        late = pool.submit(gateway.chat, "held")
        wait_for(lambda: gateway.metric("vllm_launch_gateway_waiting", model="held") == 1, 30)
        assert not late.done()
        release.write_text("")
        answer = late.result(timeout=60)
    assert answer.status_code == 200, answer.text
    assert status(fake_env)["held"]["pid"] != first["pid"]  # a fresh server
    assert gateway.metric("vllm_launch_gateway_cold_starts_total", model="held") == 2
    assert "POST /v1/chat/completions held -> held 200" in gateway.log()


def test_a_request_for_a_server_being_evicted_is_not_sent_to_it(gateways, fake_env, tmp_path):
    """beta's start evicts alpha (only one fits); alpha's server holds its exit: a request for alpha in that
    window waits for the stop, then tries a fresh start, which cannot fit while beta starts for its own
    request: a 503 with the numbers, never the dying server's 502."""
    release = tmp_path / "release-stop"
    small(fake_env, "alpha", env={"FAKE_VLLM_HOLD_STOP_FILE": str(release)})
    small(fake_env, "beta")
    gateway = gateways("alpha", "beta", "--idle", "0", "--memory-gib", "10")
    assert gateway.chat("alpha").status_code == 200
    alpha_log = Path(status(fake_env)["alpha"]["log"])
    with ThreadPoolExecutor(2) as pool:
        for_beta = pool.submit(gateway.chat, "beta")
        wait_for(lambda: "stop requested" in alpha_log.read_text(), 30)  # the eviction is under way
        assert gateway.state("alpha") == "stopping"
        for_alpha = pool.submit(gateway.chat, "alpha")
        wait_for(lambda: gateway.metric("vllm_launch_gateway_waiting", model="alpha") == 1, 30)
        release.write_text("")
        beta_answer, alpha_answer = for_beta.result(timeout=60), for_alpha.result(timeout=60)
    assert beta_answer.status_code == 200, beta_answer.text
    assert alpha_answer.status_code == 503, alpha_answer.text
    assert alpha_answer.json()["error"]["message"].startswith("cannot start alpha needs")
    assert gateway.metric("vllm_launch_gateway_evictions_total", model="alpha") == 1


def test_an_upstream_key_behind_a_reachable_gateway_without_its_own_key_is_refused(gateways, fake_env):
    fake_env.update(SERVER_KEY="server-secret-2", GATEWAY_KEY="gateway-secret-1")
    preset(fake_env, "locked", api_key_env="SERVER_KEY")
    for extra in ([], ["--detach"]):
        refused = cli(["gateway", "locked", "--host", "0.0.0.0", "--hardware", HARDWARE, *extra], fake_env)
        assert refused.returncode == 2, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "locked (api_key_env SERVER_KEY)" in lines[0]
        assert "--api-key-env" in lines[0]
        assert "Traceback" not in refused.stderr and "server-secret-2" not in refused.stderr
    assert status(fake_env) == {}
    gateway = gateways("locked", "--host", "0.0.0.0", "--api-key-env", "GATEWAY_KEY", "--idle", "0")
    gateway.headers = {"Authorization": "Bearer gateway-secret-1"}
    assert gateway.chat("locked").status_code == 200


def _stream_until_cut(url: str, body: dict, started: threading.Event) -> list[str]:
    lines = []
    with httpx.stream("POST", url, json=body, timeout=60) as answer:
        for line in answer.iter_lines():
            lines.append(line)
            if line.startswith("data:"):
                started.set()
    return lines


@pytest.mark.parametrize(("path", "body", "protocol"), [
    ("/v1/chat/completions", {"model": "long", "stream": True, "messages": []}, protocols.OPENAI),
    ("/v1/messages", {"model": "long", "stream": True, "max_tokens": 8, "messages": []}, protocols.ANTHROPIC),
    ("/v1/responses", {"model": "long", "stream": True, "input": "hi"}, protocols.RESPONSES),
])
def test_shutdown_drains_then_cuts_open_streams_with_an_error_event(gateways, fake_env, path, body, protocol):
    preset(fake_env, "long", env={"FAKE_VLLM_STREAM_DELAY_S": "0.2", "FAKE_VLLM_STREAM_TOKENS": "500"})
    gateway = gateways("long", "--idle", "0", "--drain", "1s")
    started = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        streaming = pool.submit(_stream_until_cut, f"{gateway.url}{path}", body, started)
        assert started.wait(30)
        gateway.process.send_signal(signal.SIGTERM)
        lines = streaming.result(timeout=60)
    assert gateway.stop() == 0
    events = events_of(lines)
    last_name, last = events[-1]
    if protocol == protocols.ANTHROPIC:
        assert last_name == "error" and last["type"] == "error" and last["error"]["type"] == "api_error"
        message = last["error"]["message"]
    elif protocol == protocols.RESPONSES:
        assert last_name == "error" and last["type"] == "error"
        message = last["message"]
    else:
        message = last["error"]["message"]
    assert "the gateway is stopping" in message and "drain of 1 s" in message
    assert len(events) > 3  # it was streaming
    log = gateway.log()
    assert f"POST {path} long -> long cut" in log, log
    assert "cutting 1 stream(s) still open after 1 s" in log
    assert "long -> long 200" not in log


def test_a_stream_that_ends_within_the_drain_is_whole(gateways, fake_env):
    preset(fake_env, "short", env={"FAKE_VLLM_STREAM_DELAY_S": "0.2", "FAKE_VLLM_STREAM_TOKENS": "8"})
    gateway = gateways("short", "--idle", "0", "--drain", "30s")
    started = threading.Event()
    body = {"model": "short", "stream": True, "messages": []}
    with ThreadPoolExecutor(1) as pool:
        streaming = pool.submit(_stream_until_cut, f"{gateway.url}/v1/chat/completions", body, started)
        assert started.wait(30)
        gateway.process.send_signal(signal.SIGTERM)
        lines = streaming.result(timeout=60)
    assert gateway.stop() == 0
    assert "data: [DONE]" in lines and len([line for line in lines if line.startswith("data: {")]) == 8
    assert "POST /v1/chat/completions short -> short 200" in gateway.log()


def test_the_foreground_gateway_prints_how_to_reach_it(gateways, fake_env):
    preset(fake_env, "alpha")
    gateway = gateways("alpha", "--idle", "0")
    log = gateway.log()
    assert f"export OPENAI_BASE_URL=http://127.0.0.1:{gateway.port}/v1" in log
    assert f"export ANTHROPIC_BASE_URL=http://127.0.0.1:{gateway.port}\n" in log
    assert f"base_url: http://127.0.0.1:{gateway.port}/v1" in log
    assert "gateway gateway" not in log and f"gateway on http://127.0.0.1:{gateway.port}/v1 for alpha" in log
    named = gateways("alpha", "--idle", "0", name="gw2")
    assert "gateway gw2 on" in named.log()


def test_gateway_help_shows_presets_and_defaults_once(fake_env):
    result = cli(["gateway", "--help"], {**fake_env, "COLUMNS": "200"})
    assert result.returncode == 0
    assert "[[PRESET]...]..." not in result.stdout and "[PRESET]..." in result.stdout
    host = result.stdout[result.stdout.index("--host"):result.stdout.index("--port")]
    assert host.count("127.0.0.1") == 1, host


# ------------------------------------------------------------------------------------------- pure


def test_response_owners_are_bounded_oldest_first():
    owners = protocols.ResponseOwners(limit=3)
    for index in range(5):
        owners.remember(f"resp_{index}", f"route{index}")
    assert len(owners) == 3 and owners.owner("resp_0") is None and owners.owner("resp_4") == "route4"
    owners.remember("resp_2", "route2")  # used again: now the newest
    owners.remember("resp_5", "route5")
    assert owners.owner("resp_2") == "route2" and owners.owner("resp_3") is None


def test_the_multipart_model_field_is_replaced_byte_for_byte():
    body = (b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
            b'\xff\x00model\r\n--XyZ\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
            b"--XyZ--\r\n")
    content_type = 'multipart/form-data; boundary="XyZ"'
    assert protocols.multipart_model(body, content_type) == "whisper-1"
    replaced = protocols.with_multipart_model(body, content_type, "org/whisper")
    assert replaced == body.replace(b"whisper-1", b"org/whisper")
    assert protocols.multipart_model(b"--XyZ--\r\n", content_type) is None


def test_response_ids_are_read_from_a_body_or_a_streams_first_event():
    assert protocols.response_id_of(b'{"id": "resp_1", "object": "response"}') == "resp_1"
    stream = (b'event: response.created\ndata: {"type": "response.created", "sequence_number": 0, '
              b'"response": {"id": "resp_2", "status": "in_progress"}}\n\n')
    assert protocols.response_id_of(stream) == "resp_2"
    assert protocols.response_id_of(stream[:40]) is None
    assert protocols.response_id_of(b'{"id": "../../etc"}') is None  # never a path


# --------------------------------------------------------------------------- the official SDKs, fake vLLM


def test_the_official_sdks_requests_pass_unchanged_and_parse_the_answers(gateways, fake_env):
    """The anthropic and openai SDKs themselves as the clients (their own headers, multipart encoding,
    query strings and stream parsers) against fake servers that echo what they received."""
    import anthropic
    from openai import OpenAI

    preset(fake_env, "alpha", aliases=[CLAUDE, "whisper-1"], env={"FAKE_VLLM_STREAM_TOKENS": "3"})
    gateway = gateways("alpha", "--idle", "0")
    claude = anthropic.Anthropic(base_url=gateway.url, api_key="any", max_retries=0, timeout=60)
    message = claude.messages.create(model=CLAUDE, max_tokens=16, tools=TOOLS_ANTHROPIC,
                                     messages=[{"role": "user", "content": "Weather in Paris?"}])
    assert message.stop_reason == "tool_use" and message.content[1].input == {"city": "Paris"}
    received = message.model_extra["received"]
    assert received["headers"]["anthropic-version"] and "x-api-key" not in received["headers"]
    assert received["body"]["model"] == "fake/alpha" and received["body"]["tools"] == TOOLS_ANTHROPIC
    hi = [{"role": "user", "content": "hi"}]
    with claude.messages.stream(model=CLAUDE, max_tokens=16, messages=hi) as stream:
        text = "".join(stream.text_stream)
    assert text == "tok0 tok1 tok2 "
    beta = claude.beta.messages.create(model=CLAUDE, max_tokens=8, betas=["some-beta-2025-01-01"],
                                       messages=[{"role": "user", "content": "hi"}])
    assert beta.model_extra["received"]["headers"]["anthropic-beta"] == "some-beta-2025-01-01"
    assert claude.messages.count_tokens(model=CLAUDE, messages=hi).input_tokens == 7
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="claude-opus-4-1", max_tokens=8, messages=hi)
    assert missing.value.body["error"]["type"] == "not_found_error"

    client = OpenAI(base_url=f"{gateway.url}/v1", api_key="any", max_retries=0, timeout=60)
    events = list(client.responses.create(model=CLAUDE, input="hi", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    response_id = events[0].response.id
    assert client.responses.retrieve(response_id).id == response_id
    assert client.responses.cancel(response_id).status == "cancelled"
    audio = bytes(range(256)) * 16
    transcript = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", audio, "audio/wav"))
    body = transcript.model_extra["received"]["body"]
    assert transcript.text == "fake transcript" and body["model"] == "fake/alpha"
    assert body["file"]["bytes"] == len(audio)
    assert client.embeddings.create(model=CLAUDE, input="x").data[0].embedding == [0.1, 0.2]
