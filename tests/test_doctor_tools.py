"""`doctor --tools`: tool-calling conformance, judged on answers written by hand and against a fake server
for every failure mode a real random-weight model cannot produce on demand (text instead of tool_calls,
broken JSON in a stream, missing arguments, HTTP 400 for auto, a context too short for the client)."""

from __future__ import annotations

import json

import pytest
from cli_helpers import isolated_env, run_cli
from fake_openai import FakeOpenAI

from vllm_launcher.doctor.tools import NAMED, Answer, Check, assemble_stream, checks, judge_check, run_checks


def codes_by_check(findings) -> dict[str, str]:
    return {f.message.split(":", 1)[0]: f.code for f in findings}


# ------------------------------------------------------------------------------------------- pure


def test_stream_deltas_are_assembled_like_an_openai_client():
    def chunk(function: dict) -> str:
        return "data: " + json.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": function}]}}]})

    lines = [chunk({"name": "get_weather", "arguments": '{"ci'}), chunk({"arguments": 'ty": "Paris"}'}),
             "data: [DONE]"]
    answer = assemble_stream(lines)
    assert answer.calls == [{"name": "get_weather", "arguments": '{"city": "Paris"}'}]
    assert not answer.broken_stream
    broken = assemble_stream(['data: {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {'])
    assert broken.broken_stream


@pytest.mark.parametrize(("answer", "code"), [
    (Answer(200, calls=[{"name": "get_weather", "arguments": '{"city": "Paris"}'}]), "VL420"),
    (Answer(200, content='<tool_call>{"name": "get_weather"}</tool_call>'), "VL421"),
    (Answer(200, content="It is sunny."), "VL422"),
    (Answer(200, calls=[{"name": "get_weather", "arguments": "{}"}]), "VL423"),
    (Answer(200, calls=[{"name": "get_weather", "arguments": '{"city": 3}'}]), "VL423"),
    (Answer(200, calls=[{"name": "get_weather", "arguments": '{"city": "Pa'}]), "VL423"),
    (Answer(200, calls=[{"name": "rm_rf", "arguments": "{}"}]), "VL423"),
    (Answer(500, error="EngineCore died"), "VL424"),
    (Answer(error="ConnectError: refused"), "VL424"),
])
def test_required_check_verdicts(answer, code):
    finding = judge_check(Check("required", "required"), answer, model="Qwen/Qwen2.5-7B-Instruct",
                          parser=None)
    assert finding.code == code, finding
    if code not in ("VL420",):
        assert finding.fix  # every failure says what to do
    if code == "VL421":
        assert "--tool-call-parser hermes" in finding.fix  # Qwen's format


def test_auto_without_a_call_is_a_warning_and_named_needs_that_tool():
    plain = judge_check(Check("auto", "auto"), Answer(200, content="sunny"), model="m", parser=None)
    assert plain.code == "VL425" and plain.severity == "warning"
    other = judge_check(Check("named", NAMED), Answer(200, calls=[{"name": "get_time", "arguments": "{}"}]),
                        model="m", parser=None)
    assert other.code in ("VL422", "VL423")


def test_the_client_prompt_check_is_added_and_a_400_there_says_context():
    assert len(checks()) == 8 and len(checks(6500)) == 9
    long = checks(6500)[-1]
    finding = judge_check(long, Answer(400, error="maximum context length is 2048 tokens"), model="m",
                          parser=None)
    assert finding.code == "VL427" and "max_model_len" in finding.fix


# ------------------------------------------------------------------------------------- fake server


def test_a_conformant_server_passes_every_check_but_the_parallel_one():
    with FakeOpenAI("native") as server:
        found = codes_by_check(run_checks(server.base_url, server.model, client_prompt_tokens=500))
    assert found.pop("two tools in one turn") == "VL426"
    assert set(found.values()) == {"VL420"}, found
    assert len(found) == 8


def test_parallel_calls_pass_the_two_tool_check():
    with FakeOpenAI("parallel") as server:
        found = codes_by_check(run_checks(server.base_url, server.model))
    assert set(found.values()) == {"VL420"}, found


@pytest.mark.parametrize(("mode", "expected"), [
    ("tool_call", {"auto": "VL421", "required, streamed": "VL421", "named get_weather": "VL421"}),
    ("broken_stream", {"auto, streamed": "VL423", "required, streamed": "VL423", "required": "VL420"}),
    ("missing_args", {"auto": "VL423", "named get_weather, streamed": "VL423"}),
    ("auto_400", {"auto": "VL424", "auto, streamed": "VL424"}),
    ("plain", {"auto": "VL425", "required": "VL422"}),
])
def test_each_failure_mode_is_named(mode, expected):
    with FakeOpenAI(mode) as server:
        found = codes_by_check(run_checks(server.base_url, server.model))
    assert {name: found[name] for name in expected} == expected, found


def test_a_context_too_short_for_the_client_prompt(tmp_path):
    with FakeOpenAI("context_400") as server:
        found = run_checks(server.base_url, server.model, client_prompt_tokens=6500)
    last = found[-1]
    assert last.code == "VL427" and "6500 tokens" in last.message and "maximum context length" in last.message


def test_doctor_tools_cli_one_line_per_check_and_exit_1_on_errors(tmp_path):
    env = isolated_env(tmp_path)
    with FakeOpenAI("tool_call") as server:
        result = run_cli(["doctor", "--endpoint", server.root, "--tools", "--json"], env)
        good = FakeOpenAI("native")
        with good:
            ok = run_cli(["doctor", "--endpoint", good.root, "--tools", "--client-prompt-tokens", "300"], env)
    assert result.returncode == 1
    codes = [f["code"] for f in json.loads(result.stdout)["findings"]]
    assert codes.count("VL421") >= 4 and "VL405" not in codes  # the conformance checks replace the probe
    assert ok.returncode == 0, ok.stdout
    assert good.gets.count("/v1/models") == 1  # the live checks' answer also names the model to try
    assert ok.stdout.count("VL420") == 8 and "client's prompt length (300 tokens)" in ok.stdout
    bad = run_cli(["doctor", "--endpoint", "http://127.0.0.1:9", "--client-prompt-tokens", "5"], env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


# ------------------------------------------------------------------------------------------ real vLLM


@pytest.mark.vllm
@pytest.mark.timeout(900)
def test_doctor_tools_against_the_real_demo_server(demo_server):
    """Every check through vLLM's real tool path: the demo model is trained (tiny_model.py --tools) to answer
    in the hermes format, so tool_choice auto, required and named, streamed or not, two tools in one turn, a
    tool result round trip and "required" behind 1,500 tokens of system prompt all come back as tool_calls
    (or an answer) that fit the schema. 3,000 tokens of system prompt do not fit max_model_len 2048: VL427."""
    result = run_cli(["doctor", demo_server.name, "--tools", "--client-prompt-tokens", "1500", "--json"],
                     demo_server.env, timeout=600)
    findings = {f["message"].split(":", 1)[0]: f for f in json.loads(result.stdout)["findings"]
                if f["code"].startswith("VL42")}
    print(json.dumps({name: [f["code"], f["message"][:200]] for name, f in findings.items()}, indent=1))
    assert set(findings) == {check.name for check in checks(1500)}
    assert {name: f["code"] for name, f in findings.items() if f["code"] != "VL420"} == {}
    assert result.returncode == 0, result.stdout
    assert "get_weather(" in findings["auto, streamed"]["message"]
    assert "get_time(" in findings["two tools in one turn"]["message"]
    too_long = run_cli(["doctor", "--endpoint", demo_server.base_url, "--tools", "--client-prompt-tokens",
                        "3000", "--json"], demo_server.env, timeout=600)
    last = [f for f in json.loads(too_long.stdout)["findings"] if "prompt length" in f["message"]]
    assert last and last[0]["code"] == "VL427" and "maximum context length" in last[0]["message"], last


# --------------------------------------------------------------------------- hostile answers (review)

HOSTILE_BODIES = [
    {"foo": 1}, {"choices": {"0": 1}}, {"choices": [{"message": "hi"}]},
    {"choices": [{"message": {"tool_calls": {"a": 1}}}]}, {"choices": [{"message": {"tool_calls": ["x"]}}]},
    {"choices": [{"message": {"tool_calls": [{"function": None}]}}]},
    {"choices": [{"message": {"tool_calls": [{"function": {"name": 5, "arguments": {"city": "P"}}}]}}]},
    {"choices": [{"message": {"content": ["get_weather"]}}]},
]


@pytest.mark.parametrize("body", HOSTILE_BODIES)
def test_answers_of_the_wrong_shape_are_findings_never_tracebacks(body):
    from vllm_launcher.doctor.tools import _answer_of

    finding = judge_check(Check("required", "required"), _answer_of(body), model="m", parser=None)
    assert finding.code in ("VL422", "VL423", "VL424") and finding.fix


@pytest.mark.parametrize("chunk", ['{"choices": "abc"}', '{"choices": [{"delta": "abc"}]}',
                                   '{"choices": [{"delta": {"tool_calls": [{"index": "x"}]}}]}',
                                   '{"choices": [{"delta": {"tool_calls": {"a": 1}}}]}',
                                   '{"choices": [{"delta": {"tool_calls": [{"index": 0, "function": '
                                   '{"name": "get_weather", "arguments": {"city": "P"}}}]}}]}'])
def test_stream_chunks_of_the_wrong_shape_are_broken_streams(chunk):
    answer = assemble_stream([f"data: {chunk}", "data: [DONE]"])
    finding = judge_check(Check("auto, streamed", "auto", stream=True), answer, model="m", parser=None)
    assert finding.code == "VL423", finding


def test_server_text_never_reaches_the_terminal_raw():
    from vllm_launcher.base.safe_text import printable

    assert printable("x\x1b[31m\nFAKE\x07") == "x\\x1b[31m\\nFAKE\\x07"


def test_a_server_that_drips_is_cut_off_and_the_rest_skipped():
    """A server sending a byte a second: each check has a whole-answer deadline, and once one gets no
    answer the remaining checks are not tried (doctor cannot hang)."""
    import http.server
    import threading
    import time

    from vllm_launcher.doctor import tools

    class Drip(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(30):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.2)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        original, tools.CHECK_DEADLINE_S = tools.CHECK_DEADLINE_S, 1.0
        ask_defaults = tools.ask.__defaults__
        tools.ask.__defaults__ = (1.0,)
        started = time.monotonic()
        found = tools.run_checks(f"http://127.0.0.1:{server.server_address[1]}", "m")
        took = time.monotonic() - started
    finally:
        tools.CHECK_DEADLINE_S = original
        tools.ask.__defaults__ = ask_defaults
        server.shutdown()
    assert [f.code for f in found] == ["VL424", "VL424"] and "not tried" in found[1].message
    assert took < 10
