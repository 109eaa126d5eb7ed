"""The real agent CLIs, each run once through `vllm-launch launch` with one non-interactive prompt: Codex
(`codex exec`), opencode (`opencode run`), aider (`aider --message`) and Claude Code (`claude -p`) through
the real gateway to a fake backend that the gateway starts as the preset's server (tests/fake_agent_vllm);
Claude Code also straight to the backend with --endpoint and a key, to see the headers the gateway does
not pass on. Each asserts what the client sent (route, model, stream, tools) and that it printed the
backend's answer.

HOME is a fresh directory, so each client starts from nothing but what `launch` wrote (and, for Codex, a
user config with telemetry off, into which launch merges its provider). The CLIs come from
scripts/install_clients.sh (scripts/install.sh runs it with the test extra) in .clients/ or
$VLLM_LAUNCH_CLIENTS; a missing one fails the test, it never skips.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from conftest import cli, free_port, write_preset
from fake_agents import ANSWER, FakeAgentBackend

REPO = Path(__file__).resolve().parent.parent
CLIENTS = Path(os.environ.get("VLLM_LAUNCH_CLIENTS") or REPO / ".clients")
FAKE_AGENT_VLLM = Path(__file__).resolve().parent / "fake_agent_vllm"
NPM_BIN = CLIENTS / "npm" / "node_modules" / ".bin"
AIDER_BIN = CLIENTS / "aider" / "bin"
CLIENT_TIMEOUT_S = 240


def installed(binary: Path) -> str:
    assert os.access(binary, os.X_OK), (f"{binary} is missing: run scripts/install_clients.sh "
                                        "(scripts/install.sh runs it with the test extra), or set "
                                        "VLLM_LAUNCH_CLIENTS")
    return str(binary)


@pytest.fixture
def agent_env(isolated_xdg: dict[str, str], tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    (home / "work").mkdir(parents=True)
    env = {**isolated_xdg, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_CACHE_HOME": str(home / ".cache"), "XDG_DATA_HOME": str(home / ".local" / "share"),
           "PATH": os.pathsep.join([str(NPM_BIN), str(AIDER_BIN), os.path.dirname(sys.executable),
                                    "/usr/local/bin", "/usr/bin", "/bin"]),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(FAKE_AGENT_VLLM), os.environ.get("PYTHONPATH")])),
           "FAKE_AGENT_LOG": str(tmp_path / "backend.jsonl"),
           "OPENCODE_DISABLE_MODELS_FETCH": "1", "OPENCODE_DISABLE_AUTOUPDATE": "1",
           "LITELLM_LOCAL_MODEL_COST_MAP": "True", "NO_COLOR": "1"}
    for var in [v for v in env if v.startswith(("OPENAI_", "ANTHROPIC_", "CODEX_", "CLAUDE_", "FAKE_VLLM"))]:
        env.pop(var)
    return env


@pytest.fixture
def gateway_preset(agent_env: dict[str, str]):
    """Preset `coder` (served as `coder`, 128K context, hermes tools), served by the fake agent backend
    that the gateway starts; the gateway is stopped afterwards."""
    write_preset(agent_env, "coder", free_port(), served_model_name="coder", max_model_len=131072,
                 tool_calling={"enabled": True, "parser": "hermes"})
    port = free_port()
    yield port
    cli(["down", "gateway"], agent_env)


def run_launch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`vllm-launch launch ARGS`, in HOME/work with no stdin: it execs the client, whose output is ours."""
    return subprocess.run([sys.executable, "-m", "vllm_launcher", "launch", *args], env=env,
                          cwd=Path(env["HOME"]) / "work", stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=CLIENT_TIMEOUT_S, check=False)


def backend_posts(env: dict[str, str], route: str) -> list[dict]:
    path = Path(env["FAKE_AGENT_LOG"])
    lines = path.read_text().splitlines() if path.exists() else []
    return [entry for entry in map(json.loads, lines) if entry["method"] == "POST"
            and entry["path"].split("?")[0] == route]


def test_codex_exec_through_launch_and_the_gateway(agent_env, gateway_preset):
    installed(NPM_BIN / "codex")
    codex = Path(agent_env["HOME"]) / ".codex"
    codex.mkdir()
    mine = ("# the user's own settings, telemetry off\n[analytics]\nenabled = false\n\n[features]\n"
            "plugins = false\n")
    (codex / "config.toml").write_text(mine)
    ran = run_launch(agent_env, "codex", "coder", "--port", str(gateway_preset), "--no-check", "--",
                     "exec", "--skip-git-repo-check", "What is the answer?")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ANSWER in ran.stdout, ran.stdout + ran.stderr
    [sent] = backend_posts(agent_env, "/v1/responses")
    body = sent["body"]
    assert body["model"] == "coder" and body["stream"] is True
    assert {tool.get("type") for tool in body["tools"]} >= {"function"}  # its shell and patch tools
    assert any("What is the answer?" in json.dumps(item) for item in body["input"])
    config = tomllib.loads((codex / "config.toml").read_text())
    assert config["analytics"] == {"enabled": False}
    assert config["model_providers"]["vllm-launch"]["wire_api"] == "responses"


def test_opencode_run_through_launch_and_the_gateway(agent_env, gateway_preset):
    installed(NPM_BIN / "opencode")
    ran = run_launch(agent_env, "opencode", "coder", "--port", str(gateway_preset), "--no-check", "--",
                     "run", "What is the answer?")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ANSWER in ran.stdout, ran.stdout + ran.stderr
    sent = backend_posts(agent_env, "/v1/chat/completions")
    assert sent and all(entry["body"]["model"] == "coder" for entry in sent)
    agent = [e for e in sent if any("What is the answer?" in json.dumps(m) for m in e["body"]["messages"])
             and e["body"].get("tools")]
    assert agent, [list(e["body"]) for e in sent]  # the agent's own turn offers its tools
    assert agent[0]["body"]["stream"] is True
    assert {t["function"]["name"] for t in agent[0]["body"]["tools"]} >= {"bash", "read"}


def test_aider_message_through_launch_and_the_gateway(agent_env, gateway_preset):
    installed(AIDER_BIN / "aider")
    ran = run_launch(agent_env, "aider", "coder", "--port", str(gateway_preset), "--", "--no-git",
                     "--no-check-update", "--analytics-disable", "--yes", "--no-show-model-warnings",
                     "--message", "What is the answer?")
    # aider exits 0 on errors too: the answer and the request are what count
    assert ANSWER in ran.stdout, ran.stdout + ran.stderr
    assert "openai/coder" in ran.stdout
    [sent] = backend_posts(agent_env, "/v1/chat/completions")
    assert sent["body"]["model"] == "coder" and sent["body"]["stream"] is True
    assert "What is the answer?" in json.dumps(sent["body"]["messages"][-1])
    assert "tools" not in sent["body"]  # aider edits by text, no tool calls


def test_claude_print_through_launch_to_the_backend(agent_env):
    installed(NPM_BIN / "claude")
    agent_env["MY_SERVER_KEY"] = "s3cret-from-the-environment"
    with FakeAgentBackend("coder") as backend:
        ran = run_launch(agent_env, "claude", "--endpoint", backend.root, "--api-key-env", "MY_SERVER_KEY",
                         "--no-check", "--", "-p", "What is the answer?")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert ANSWER in ran.stdout, ran.stdout + ran.stderr
        messages = backend.posts("/v1/messages")
    agent = [m for m in messages if "What is the answer?" in json.dumps(m["body"].get("messages"))]
    assert agent, [m["path"] for m in messages]
    sent = agent[-1]
    assert sent["path"] == "/v1/messages?beta=true"  # ANTHROPIC_BASE_URL without /v1: no /v1/v1
    assert sent["body"]["model"] == "coder" and sent["body"]["stream"] is True
    assert {tool["name"] for tool in sent["body"]["tools"]} >= {"Bash", "Read"}
    # the key went by environment (ANTHROPIC_AUTH_TOKEN), never argv or a file
    assert sent["headers"]["authorization"] == "Bearer s3cret-from-the-environment"
    home = Path(agent_env["HOME"])
    assert not any("s3cret" in p.read_text(errors="replace") for p in home.rglob("*.json") if p.is_file())
    assert "anthropic-version" in sent["headers"]
    settings = json.loads((Path(agent_env["HOME"]) / ".claude" / "settings.json").read_text())
    assert settings["env"]["CLAUDE_CODE_ATTRIBUTION_HEADER"] == "0"


def test_claude_print_through_launch_and_the_gateway(agent_env, gateway_preset):
    installed(NPM_BIN / "claude")
    ran = run_launch(agent_env, "claude", "coder", "--port", str(gateway_preset), "--no-check", "--",
                     "-p", "What is the answer?")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ANSWER in ran.stdout, ran.stdout + ran.stderr
    messages = backend_posts(agent_env, "/v1/messages")
    agent = [m for m in messages if "What is the answer?" in json.dumps(m["body"].get("messages"))]
    assert agent, [m["path"] for m in messages]
    sent = agent[-1]
    assert sent["path"] == "/v1/messages?beta=true"  # the query string kept by the gateway
    assert sent["body"]["model"] == "coder" and sent["body"]["stream"] is True
    assert {tool["name"] for tool in sent["body"]["tools"]} >= {"Bash", "Read"}
    assert "anthropic-version" in sent["headers"]  # passed on
