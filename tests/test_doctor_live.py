"""Live checks (VL4xx) against real HTTP servers: the fake OpenAI server for the tool-call formats a
random-weight model cannot produce on demand, and the session's real vLLM demo server for the rest."""

from __future__ import annotations

import json
import socket

import pytest

from tests.cli_helpers import run_cli
from tests.fake_openai import FakeOpenAI
from vllm_launcher.doctor.live import check_endpoint, classify_tool_response, repeated_span

QWEN = "Qwen/Qwen2.5-Coder-1.5B-Instruct"


def codes(findings) -> dict[str, list]:
    by_code: dict[str, list] = {}
    for finding in findings:
        by_code.setdefault(finding.code, []).append(finding)
    return by_code


def test_native_tool_calls_pass():
    with FakeOpenAI("native", model=QWEN) as server:
        found = codes(check_endpoint(server.base_url, expected_model=QWEN, expected_max_model_len=2048))
        probe = server.requests[0]
    assert set(found) == {"VL400", "VL405", "VL409"}
    assert f"{QWEN} (max_model_len 2048)" in found["VL400"][0].message
    assert "get_weather" in found["VL405"][0].message
    assert "time to first token" in found["VL409"][0].message
    assert probe["tool_choice"] == "auto" and probe["tools"][0]["function"]["name"] == "get_weather"


@pytest.mark.parametrize("mode, label", [("json_block", "```json block"),
                                         ("tool_output", "<TOOL_OUTPUT> tags"),
                                         ("tool_call", "<tool_call> tags"),
                                         ("inline_json", "bare inline JSON")])
def test_tool_call_written_as_text(mode, label):
    with FakeOpenAI(mode, model=QWEN) as server:
        found = codes(check_endpoint(server.root, expected_model=QWEN))
    text = found["VL406"][0]
    assert text.severity == "error" and label in text.message and "get_weather" in text.message
    assert "--enable-auto-tool-choice --tool-call-parser hermes" in text.fix


def test_auto_tool_choice_400():
    with FakeOpenAI("auto_400", model="mistralai/Codestral-22B-v0.1") as server:
        found = codes(check_endpoint(server.base_url))
    assert "tool choice requires" in found["VL407"][0].message
    assert "--tool-call-parser mistral" in found["VL407"][0].fix


def test_duplicated_content_gets_the_guides_advice():
    with FakeOpenAI("duplicate", model=QWEN) as server:
        found = codes(check_endpoint(server.base_url))
    assert found["VL408"][0].severity == "warning" and "deduplication" in found["VL408"][0].fix
    assert "VL411" in found


def test_unhealthy_unreachable_wrong_model_and_context():
    with FakeOpenAI("unhealthy") as server:
        assert "VL402" in codes(check_endpoint(server.base_url))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert "VL401" in codes(check_endpoint(f"http://127.0.0.1:{port}"))
    with FakeOpenAI("plain", model="other", max_model_len=4096) as server:
        found = codes(check_endpoint(server.base_url, expected_model=QWEN, expected_max_model_len=16384,
                                     tool_probe=False))
    assert "lists: other" in found["VL403"][0].message
    with FakeOpenAI("plain", model=QWEN, max_model_len=4096) as server:
        found = codes(check_endpoint(server.base_url, expected_model=QWEN, expected_max_model_len=16384))
    assert "4096" in found["VL404"][0].message and "16384" in found["VL404"][0].message


def test_an_answer_without_tool_call_is_shown_as_a_short_excerpt():
    with FakeOpenAI("rambling", model=QWEN) as server:
        found = codes(check_endpoint(server.base_url, expected_model=QWEN))
    message = found["VL411"][0].message
    assert "It is sunny in Paris, and quite warm" in message
    assert "\\n" not in message and "\n" not in message and len(message) < 200, message


def test_failing_chat_requests_are_vl412():
    with FakeOpenAI("chat_500", model=QWEN) as server:
        found = codes(check_endpoint(server.base_url, expected_model=QWEN))
    assert "VL400" in found  # healthy, lists its model
    failed = found["VL412"]
    assert len(failed) == 2 and all(f.severity == "warning" and "log" in f.fix for f in failed)
    assert "HTTP 500" in failed[1].message and "EngineCore encountered an issue" in failed[0].message


def test_api_key_is_sent_and_its_absence_reported():
    with FakeOpenAI("native", api_key="s3cret") as server:
        assert "VL410" in codes(check_endpoint(server.base_url))
        assert "VL405" in codes(check_endpoint(server.base_url, api_key="s3cret"))


def test_cli_endpoint_exit_codes_and_preset_api_key(tmp_path):
    from tests.cli_helpers import isolated_env, user_presets_dir

    env = isolated_env(tmp_path, TEST_KEY="k1")
    with FakeOpenAI("native", model=QWEN, api_key="k1") as server:
        (user_presets_dir(env) / "live.yaml").write_text(
            f"model: {QWEN}\ndevice: cpu\nport: {server.port}\nkv_cache_space_gib: 1\napi_key_env: TEST_KEY\n"
            "max_model_len: 2048\n")
        done = run_cli(["doctor", "live", "--endpoint", server.root, "--json"], env)
        live = [f for f in json.loads(done.stdout)["findings"] if f["code"].startswith("VL4")]
        assert {f["code"] for f in live} == {"VL400", "VL405", "VL409"}, done.stdout
        assert all(f["preset"] == "live" for f in live)
    with FakeOpenAI("auto_400", model=QWEN) as server:
        done = run_cli(["doctor", "--endpoint", server.base_url], env)
        assert done.returncode == 1 and "VL407" in done.stdout


def test_classification_is_pure():
    assert classify_tool_response(500, "boom").kind == "http_error"
    assert classify_tool_response(
        200, {"choices": [{"message": {"content": "{\"a\": 1}"}}]}).kind == "no_tool_call"
    unclosed = {"choices": [{"message": {"content": '<tool_call>{"name": "get_weather", "arguments": [[['}}]}
    assert classify_tool_response(200, unclosed).kind == "tool_call_tags"  # what the random demo model writes
    assert repeated_span("short") is None
    assert repeated_span("One sentence here is long. Another different sentence follows.") is None
    assert repeated_span("Paragraph that repeats itself.\nParagraph that repeats itself.") is not None


@pytest.mark.vllm
def test_live_checks_against_real_vllm(demo_server):
    """The real demo server (hermes tool calling): healthy, lists its model, no HTTP 400 on
    tool_choice auto."""
    assert_live_checks_on_real_vllm(demo_server.base_url, demo_server.model, tool_flags=True)
    done = run_cli(["doctor", demo_server.name, "--json"], demo_server.env, timeout=300)
    found = codes_from_json(done.stdout)
    assert "VL400" in found, done.stdout + done.stderr
    assert "VL526" in found  # its own log explained: vLLM's "CPU KV cache size: N tokens"
    assert "VL301" not in found or found["VL301"][0]["severity"] == "info"


def assert_live_checks_on_real_vllm(base_url: str, model: str, tool_flags: bool) -> None:
    """Shared by the demo server with tool-calling flags and (wired by conftest) one without them."""
    found = codes(check_endpoint(base_url, expected_model=model, timeout_s=240))
    assert model in found["VL400"][0].message
    assert not {"VL401", "VL402", "VL403", "VL410"} & set(found)
    if tool_flags:
        assert "VL407" not in found
        assert {"VL405", "VL406", "VL411"} & set(found)  # random weights: any answer, but no HTTP 400
    else:
        assert "--enable-auto-tool-choice --tool-call-parser" in found["VL407"][0].fix


def codes_from_json(stdout: str) -> dict[str, list]:
    by_code: dict[str, list] = {}
    for finding in json.loads(stdout)["findings"]:
        by_code.setdefault(finding["code"], []).append(finding)
    return by_code


def test_judging_recorded_exchanges_is_pure():
    """The verdicts come from recorded answers alone (no server): the same exchanges, the same findings."""
    from vllm_launcher.doctor.live import Exchange, Exchanges, Expectations, judge

    root = "http://10.0.0.9:8000"
    expect = Expectations(preset="p", model=QWEN, max_model_len=4096, parser="hermes")
    assert [f.code for f in judge(
        Exchanges(root, health=Exchange("GET /health", error="ConnectError: refused")), expect)] == ["VL401"]
    assert [f.code for f in judge(Exchanges(root, health=Exchange("GET /health", 503)), expect)] == ["VL402"]
    models = Exchange("GET /v1/models", 200, {"data": [{"id": "other", "max_model_len": 2048}]})
    tool = Exchange("POST /v1/chat/completions", 200, {"choices": [{"message": {
        "content": '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'}}]})
    stream = Exchange("POST /v1/chat/completions (stream)", 200, first_token_s=0.25)
    found = judge(Exchanges(root, Exchange("GET /health", 200), models, tool, stream, model="other"), expect)
    # 2048 served, 4096 expected
    assert [f.code for f in found] == ["VL400", "VL403", "VL404", "VL406", "VL409"]
    assert "--tool-call-parser hermes" in found[3].fix and "0.25 s" in found[4].message
    unauthorized = Exchanges(root, Exchange("GET /health", 200), Exchange("GET /v1/models", 401),
                             api_key_sent=True)
    assert "the one given was refused" in judge(unauthorized, expect)[0].message
