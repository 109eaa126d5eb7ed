"""`vllm-launch launch CLIENT`: what each client gets (--print changes nothing), the checks that refuse a
model the client cannot live with, the config entries merged into the user's own files (comments, other
entries, mode and owner kept, a backup, idempotent, our entries only, --restore), a missing binary, the
live tool check, and the gateway started once and then reused. The real CLIs run in test_launch_clients.py.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import tomllib
import yaml
from conftest import cli, write_preset
from fake_agents import FakeAgentBackend
from fake_openai import FakeOpenAI

CLIENTS = ("claude", "codex", "opencode", "aider", "agent")


@pytest.fixture
def home_env(isolated_xdg: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """A CLI environment whose HOME is a fresh directory and whose PATH finds no client."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**isolated_xdg, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "PATH": os.path.dirname(os.sys.executable)}
    for var in ("CODEX_HOME", "CLAUDE_CONFIG_DIR", "OPENCODE_CONFIG_CONTENT"):
        env.pop(var, None)
    return env


def agent_preset(env: dict[str, str], name: str = "coder", **fields: object) -> str:
    fields = {"max_model_len": 131072, "tool_calling": {"enabled": True, "parser": "hermes"},
              "served_model_name": "coder", **fields}
    return write_preset(env, name, 18555, **fields)


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def launched(env: dict[str, str], *args: str) -> dict:
    result = cli(["launch", *args, "--print", "--json"], env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# ----------------------------------------------------------------------------------------------- --print


@pytest.mark.parametrize("client", CLIENTS)
def test_print_shows_everything_and_changes_nothing(home_env, client):
    agent_preset(home_env)
    home = Path(home_env["HOME"])
    before = files_under(home)
    shown = cli(["launch", client, "coder", "--print", "--", "--flag-for-client", "x y"], home_env)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "starts gateway gateway at http://127.0.0.1:8080 for coder" in text
    assert "not installed:" in text  # PATH has no client here
    assert "environment (for the client's process only):" in text and "files:" in text
    assert text.rstrip().splitlines()[-1].endswith("--flag-for-client 'x y'")  # after `--`: the client's
    assert files_under(home) == before  # nothing written
    assert json.loads(cli(["status", "--json"], home_env).stdout) == []  # nothing started


def test_claude_gets_the_root_url_a_token_and_every_model_variable(home_env):
    agent_preset(home_env, served_model_name="Qwen/Qwen2.5-Coder-7B-Instruct")
    shown = launched(home_env, "claude", "coder")
    env = shown["env"]
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:8080"  # no /v1: Claude Code adds it
    assert env["ANTHROPIC_AUTH_TOKEN"] and env["ANTHROPIC_API_KEY"] == ""
    # a served name with "/" would break Claude Code: the gateway also answers to the preset's name
    for var in ("ANTHROPIC_MODEL", "ANTHROPIC_DEFAULT_OPUS_MODEL", "ANTHROPIC_DEFAULT_SONNET_MODEL",
                "ANTHROPIC_DEFAULT_HAIKU_MODEL", "CLAUDE_CODE_SUBAGENT_MODEL"):
        assert env[var] == "coder"
    assert env["CLAUDE_CODE_AUTO_COMPACT_WINDOW"] == "131072"
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    [settings] = shown["files"]
    assert settings["path"].endswith("/.claude/settings.json") and settings["action"] == "creates it"
    assert json.loads(settings["entry"]) == {"env": {"CLAUDE_CODE_ATTRIBUTION_HEADER": "0"}}
    assert shown["argv"] == ["claude"]


def test_a_key_goes_by_reference_never_by_value(home_env):
    agent_preset(home_env)
    home_env["MY_GATEWAY_KEY"] = "s3cret-value-never-shown"
    for client in CLIENTS:
        result = cli(["launch", client, "coder", "--api-key-env", "MY_GATEWAY_KEY", "--print"], home_env)
        assert result.returncode == 0, result.stderr
        assert "s3cret-value-never-shown" not in result.stdout + result.stderr
        assert '="$MY_GATEWAY_KEY"' in result.stdout
    codex = launched(home_env, "codex", "coder", "--api-key-env", "MY_GATEWAY_KEY")
    assert codex["secret_env"] == {"VLLM_LAUNCH_API_KEY": "MY_GATEWAY_KEY"}


def test_codex_gets_a_provider_and_its_own_profile_file(home_env):
    agent_preset(home_env)
    shown = launched(home_env, "codex", "coder")
    config, profile = shown["files"]
    assert config["path"].endswith("/.codex/config.toml")
    assert tomllib.loads(config["entry"]) == {"model_providers": {"vllm-launch": {
        "name": "vllm-launch", "base_url": "http://127.0.0.1:8080/v1", "env_key": "VLLM_LAUNCH_API_KEY",
        "wire_api": "responses"}}}
    assert profile["path"].endswith("/.codex/vllm-launch.config.toml")
    assert tomllib.loads(profile["entry"]) == {"model": "coder", "model_provider": "vllm-launch",
                                                "model_context_window": 131072}
    assert shown["argv"] == ["codex", "--profile", "vllm-launch"]


def test_opencode_and_aider_and_the_agent(home_env):
    agent_preset(home_env)
    opencode = launched(home_env, "opencode", "coder")
    assert json.loads(opencode["env"]["OPENCODE_CONFIG_CONTENT"]) == {"model": "vllm-launch/coder"}
    provider = json.loads(opencode["files"][0]["entry"])["provider"]["vllm-launch"]
    assert provider["options"] == {"baseURL": "http://127.0.0.1:8080/v1",
                                   "apiKey": "{env:VLLM_LAUNCH_API_KEY}"}
    assert provider["models"]["coder"]["limit"]["context"] == 131072
    aider = launched(home_env, "aider", "coder")
    assert aider["env"]["OPENAI_API_BASE"] == "http://127.0.0.1:8080/v1"
    assert aider["argv"][:3] == ["aider", "--model", "openai/coder"]
    assert json.loads(aider["files"][0]["entry"])["openai/coder"]["max_input_tokens"] == 131072
    agent = launched(home_env, "victor", "coder")  # an alias
    assert yaml.safe_load(agent["files"][0]["entry"]) == {"vllm": {"base_url": "http://127.0.0.1:8080/v1",
                                                                   "timeout": 300}}
    assert agent["argv"] == ["victor", "chat", "--provider", "vllm", "--model", "coder"]


# ------------------------------------------------------------------------------------------------ checks


def test_a_short_context_or_tools_off_refuses_with_the_fix_and_touches_nothing(home_env):
    agent_preset(home_env, "short", max_model_len=4096)
    agent_preset(home_env, "notools", tool_calling={"enabled": False})
    home = Path(home_env["HOME"])
    (home / "bin").mkdir()
    fake_claude = home / "bin" / "claude"
    fake_claude.write_text("#!/bin/sh\necho should-not-run\n")
    fake_claude.chmod(0o755)
    home_env["PATH"] = f"{home / 'bin'}:{home_env['PATH']}"
    before = files_under(home)
    short = cli(["launch", "claude", "short"], home_env)
    assert short.returncode == 1 and "should-not-run" not in short.stdout
    assert ("context 4096 tokens is below Claude Code's minimum of 65536: set max_model_len: 65536"
            in short.stderr)
    notools = cli(["launch", "claude", "notools"], home_env)
    assert notools.returncode == 1
    assert "tool calling is off in preset notools" in notools.stderr
    assert "tool_calling: {enabled: true, parser: hermes}" in notools.stderr  # fake/NAME: the default parser
    assert files_under(home) == before
    assert json.loads(cli(["status", "--json"], home_env).stdout) == []
    shown = launched(home_env, "claude", "short")
    assert shown["checks"][0]["ok"] is False  # --print shows it and exits 0


def test_a_missing_client_is_one_line_with_how_to_install_it(home_env):
    agent_preset(home_env)
    for client, hint in (("claude", "npm install -g @anthropic-ai/claude-code"),
                         ("codex", "npm install -g @openai/codex"),
                         ("opencode", "npm install -g opencode-ai"),
                         ("aider", "pip install aider-chat")):
        result = cli(["launch", client, "coder"], home_env)
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1 and "not installed" in result.stderr
        assert hint in result.stderr and "Traceback" not in result.stderr
    unknown = cli(["launch", "emacs", "coder"], home_env)
    assert unknown.returncode == 2 and "use one of claude, codex, opencode, aider, agent" in unknown.stderr


def test_the_live_tool_check_refuses_a_server_whose_calls_come_back_as_text(home_env):
    with FakeOpenAI("tool_call", model="coder", max_model_len=32768) as server:
        refused = cli(["launch", "agent", "--endpoint", server.root, "--config-only"], home_env)
        assert refused.returncode == 1, refused.stderr
        assert "VL421" in refused.stderr and "--tool-call-parser" in refused.stderr
        assert not (Path(home_env["HOME"]) / ".victor").exists()  # refused: nothing written
    with FakeOpenAI("native", model="coder", max_model_len=32768) as server:
        passed = cli(["launch", "agent", "--endpoint", server.root, "--config-only"], home_env)
        assert passed.returncode == 0, passed.stderr
        sent = [r for r in server.requests if r.get("tools")]
        assert any(r.get("tool_choice") == "required" and r["messages"][0]["role"] == "system" for r in sent)
        profile = yaml.safe_load((Path(home_env["HOME"]) / ".victor" / "profiles.yaml").read_text())
        assert profile == {"vllm": {"base_url": f"{server.root}/v1", "timeout": 300}}


# ----------------------------------------------------------------------------------------- config merges


def run_config_only(env: dict[str, str], client: str, server: FakeAgentBackend, *extra: str):
    return cli(["launch", client, "--endpoint", server.root, "--config-only", "--no-check", *extra], env)


CODEX_USER = ("# my codex settings\nmodel = \"gpt-5\"  # the default stays mine\n\n[analytics]\n"
              "enabled = false\n"
              "\n[model_providers.mine]\nname = \"mine\"\nbase_url = \"http://elsewhere/v1\"\n")


def test_codex_merge_keeps_the_users_file_mode_and_comments_and_restores_byte_for_byte(home_env):
    codex = Path(home_env["HOME"]) / ".codex"
    codex.mkdir()
    config = codex / "config.toml"
    config.write_text(CODEX_USER)
    config.chmod(0o600)
    with FakeAgentBackend("coder") as server:
        first = run_config_only(home_env, "codex", server)
        assert first.returncode == 0, first.stderr
        text = config.read_text()
        assert text.startswith(CODEX_USER)  # the user's lines, byte for byte
        data = tomllib.loads(text)
        assert data["model"] == "gpt-5" and data["model_providers"]["mine"]["base_url"] == "http://elsewhere/v1"
        assert data["model_providers"]["vllm-launch"]["base_url"] == f"{server.root}/v1"
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert (codex / "config.toml.vllm-launch.bak").read_text() == CODEX_USER
        profile = tomllib.loads((codex / "vllm-launch.config.toml").read_text())
        assert profile["model"] == "coder" and profile["model_context_window"] == 131072
        again = run_config_only(home_env, "codex", server)  # a second run: the same one entry
        assert again.returncode == 0, again.stderr
        assert config.read_text() == text and "already holds it" in again.stdout
    restored = cli(["launch", "codex", "--restore"], home_env)
    assert restored.returncode == 0, restored.stderr
    assert config.read_text() == CODEX_USER
    assert not (codex / "vllm-launch.config.toml").exists()


def test_a_later_run_updates_only_its_own_entry(home_env):
    codex = Path(home_env["HOME"]) / ".codex"
    codex.mkdir()
    config = codex / "config.toml"
    config.write_text(CODEX_USER)
    with FakeAgentBackend("coder") as first, FakeAgentBackend("coder") as second:
        assert run_config_only(home_env, "codex", first).returncode == 0
        config.write_text(config.read_text() + "\n[profiles_note]\nmine = true\n")  # the user adds more
        assert run_config_only(home_env, "codex", second).returncode == 0
    data = tomllib.loads(config.read_text())
    assert data["model_providers"]["vllm-launch"]["base_url"] == f"{second.root}/v1"
    assert data["profiles_note"] == {"mine": True} and data["model_providers"]["mine"]["name"] == "mine"
    assert config.read_text().count("[model_providers.vllm-launch]") == 1


def test_entries_we_did_not_write_are_never_clobbered(home_env):
    codex = Path(home_env["HOME"]) / ".codex"
    codex.mkdir()
    theirs = "[model_providers.vllm-launch]\nname = \"hand-made\"\n"
    (codex / "config.toml").write_text(theirs)
    with FakeAgentBackend("coder") as server:
        refused = run_config_only(home_env, "codex", server)
        assert refused.returncode == 2
        assert "config.toml: it already has a [model_providers.vllm-launch] table" in refused.stderr
        assert (codex / "config.toml").read_text() == theirs
        (codex / "config.toml").unlink()
        (codex / "vllm-launch.config.toml").write_text("model = \"mine\"\n")
        refused = run_config_only(home_env, "codex", server)
        assert refused.returncode == 2 and "was not written by vllm-launch" in refused.stderr
        assert not (codex / "config.toml").exists()  # all files checked before any is written


def test_claude_settings_keep_the_users_keys_and_restore_puts_back_their_value(home_env):
    claude = Path(home_env["HOME"]) / ".claude"
    claude.mkdir()
    settings = claude / "settings.json"
    user = {"theme": "dark", "env": {"MY_VAR": "1", "CLAUDE_CODE_ATTRIBUTION_HEADER": "1"},
            "permissions": {"allow": ["Bash(ls)"]}}
    settings.write_text(json.dumps(user, indent=4))
    settings.chmod(0o640)
    with FakeAgentBackend("coder") as server:
        written = run_config_only(home_env, "claude", server)
        assert written.returncode == 0, written.stderr
        assert "replaces your env.CLAUDE_CODE_ATTRIBUTION_HEADER" in written.stdout
        data = json.loads(settings.read_text())
        assert data == {**user, "env": {"MY_VAR": "1", "CLAUDE_CODE_ATTRIBUTION_HEADER": "0"}}
        assert stat.S_IMODE(settings.stat().st_mode) == 0o640
        assert "ANTHROPIC_BASE_URL=" + server.root in written.stdout  # the env it would set, to copy
    assert cli(["launch", "claude", "--restore"], home_env).returncode == 0
    assert json.loads(settings.read_text()) == user


def test_a_value_the_user_changed_after_us_is_refused_and_left_by_restore(home_env):
    with FakeAgentBackend("coder") as server:
        assert run_config_only(home_env, "opencode", server).returncode == 0
        path = Path(home_env["HOME"]) / ".config" / "opencode" / "opencode.json"
        data = json.loads(path.read_text())
        data["provider"]["vllm-launch"]["options"]["baseURL"] = "http://mine/v1"
        data["theme"] = "mine"
        path.write_text(json.dumps(data))
        refused = run_config_only(home_env, "opencode", server)
        assert refused.returncode == 2 and "provider.vllm-launch was changed since vllm-launch wrote it" \
            in refused.stderr
    restore = cli(["launch", "opencode", "--restore"], home_env)
    assert restore.returncode == 0 and "changed since vllm-launch wrote it" in restore.stdout
    assert json.loads(path.read_text()) == data


def test_files_we_created_are_removed_by_restore(home_env):
    home = Path(home_env["HOME"])
    with FakeAgentBackend("coder") as server:
        for client in ("claude", "opencode", "aider", "agent"):
            assert run_config_only(home_env, client, server).returncode == 0, client
    assert sorted(files_under(home)) == [".aider.model.metadata.json", ".claude/settings.json",
                                         ".config/opencode/opencode.json", ".victor/profiles.yaml"]
    for client in ("claude", "opencode", "aider"):
        assert cli(["launch", client, "--restore"], home_env).returncode == 0
    restored = cli(["launch", "agent", "--restore"], home_env)
    assert restored.returncode == 0, restored.stderr
    assert files_under(home) == []  # each was created by vllm-launch: removed, with its backup


def test_the_agent_profile_merges_like_client_config_and_restore_puts_the_old_one_back(home_env):
    victor = Path(home_env["HOME"]) / ".victor"
    victor.mkdir()
    original = "# profiles\r\nopenai:\r\n  key_env: K\r\nvllm:\r\n  base_url: http://old/v1\r\n  model: m\r\n"
    (victor / "profiles.yaml").write_bytes(original.encode())
    with FakeAgentBackend("coder") as server:
        assert run_config_only(home_env, "agent", server).returncode == 0
        text = (victor / "profiles.yaml").read_bytes().decode()
        assert text.startswith("# profiles\r\nopenai:\r\n  key_env: K\r\n")
        assert "\n" not in text.replace("\r\n", "")
        assert yaml.safe_load(text)["vllm"] == {"base_url": f"{server.root}/v1", "model": "m", "timeout": 300}
    assert cli(["launch", "agent", "--restore"], home_env).returncode == 0
    assert yaml.safe_load((victor / "profiles.yaml").read_text()) == yaml.safe_load(original)


# ----------------------------------------------------------------------------------------------- gateway


def test_launch_starts_the_gateway_once_then_reuses_it(fake_env, tmp_path, port):
    env = {**fake_env, "HOME": str(tmp_path / "home")}
    write_preset(env, "coder", 18556, max_model_len=131072,
                 tool_calling={"enabled": True, "parser": "hermes"})
    try:
        first = cli(["launch", "codex", "coder", "--port", str(port), "--config-only", "--no-check"], env)
        assert first.returncode == 0, first.stderr
        assert f"started gateway gateway at http://127.0.0.1:{port}" in first.stderr
        [gateway] = [r for r in json.loads(cli(["status", "--json"], env).stdout) if r["name"] == "gateway"]
        assert gateway["state"] == "ready"
        again = launched(env, "opencode", "coder", "--port", str(port + 1))
        assert again["gateway"]["running"] is True and again["base_url"] == f"http://127.0.0.1:{port}/v1"
        other = cli(["launch", "codex", "demo", "--print"], env)
        assert other.returncode == 2
        assert "gateway gateway runs already for coder, not for demo" in other.stderr
    finally:
        cli(["down", "gateway"], env)


def test_as_root_a_users_config_stays_theirs(home_env):
    assert os.geteuid() == 0, "this case is about running as root (the tests run as root here)"
    home = Path(home_env["HOME"])
    (home / ".codex").mkdir()
    config = home / ".codex" / "config.toml"
    config.write_text(CODEX_USER)
    for path in (home, home / ".codex", config):
        os.chown(path, 12345, 23456)
    config.chmod(0o600)
    with FakeAgentBackend("coder") as server:
        assert run_config_only(home_env, "codex", server).returncode == 0
        assert run_config_only(home_env, "claude", server).returncode == 0
    codex = home / ".codex"
    for path in (config, codex / "config.toml.vllm-launch.bak", codex / "vllm-launch.config.toml",
                 home / ".claude" / "settings.json"):
        assert (path.stat().st_uid, path.stat().st_gid) == (12345, 23456), path
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


def test_a_file_we_cannot_merge_is_one_line_naming_it(home_env):
    claude = Path(home_env["HOME"]) / ".claude"
    claude.mkdir()
    (claude / "settings.json").write_text('{\n  "theme": "dark",\n  oops\n}\n')
    (Path(home_env["HOME"]) / ".codex").mkdir()
    (Path(home_env["HOME"]) / ".codex" / "config.toml").write_text("model_providers = { mine = 1 }\n")
    with FakeAgentBackend("coder") as server:
        for client, expected in (("claude", "settings.json: line 3: not JSON"),
                                 ("codex", "config.toml: cannot add [model_providers.vllm-launch] without "
                                           "changing the meaning")):
            for args in (["--print"], ["--config-only", "--no-check"]):
                result = cli(["launch", client, "--endpoint", server.root, *args], home_env)
                assert result.returncode == 2, result.stderr
                assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
                assert "Traceback" not in result.stderr
    assert (claude / "settings.json").read_text() == '{\n  "theme": "dark",\n  oops\n}\n'
