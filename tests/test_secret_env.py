"""Env entries whose names look like secrets (OPENAI_API_KEY, *_TOKEN, *_PASSWORD, *_SECRET, ...) are
secrets: every format references them (${VAR}), none renders the value written in the preset, the server
gets the user's value, and doctor VL315 names a value written in the preset (VL311 an unset reference)."""

from __future__ import annotations

import json

import pytest
from cli_helpers import isolated_env, run_cli, user_presets_dir

WRITTEN = {"OPENAI_API_KEY": "sk-written-in-the-preset-1", "DB_PASSWORD": "hunter2-in-the-preset",
           "ANTHROPIC_AUTH_TOKEN": "tok-in-the-preset", "MY_SECRET": "shh-in-the-preset"}


def secret_preset(env: dict[str, str], device: str = "cpu") -> str:
    data = {"model": "Qwen/Qwen2.5-0.5B-Instruct", "device": device, "kv_cache_space_gib": 1,
            "env": {**WRITTEN, "GH_TOKEN": "${MY_GH_TOKEN}", "PLAIN_SETTING": "visible"}}
    (user_presets_dir(env) / "sec.yaml").write_text(json.dumps(data))
    return "sec"


@pytest.mark.parametrize(("name", "secret"), [
    ("OPENAI_API_KEY", True), ("GH_TOKEN", True), ("DB_PASSWORD", True), ("AWS_SECRET_ACCESS_KEY", True),
    ("MY_SECRET", True), ("APIKEY", True), ("hf_token", True), ("MAX_TOKENS", False),
    ("TOKENIZERS_PARALLELISM", False), ("VLLM_USE_V1", False), ("HF_TOKEN_PATH", False),
])
def test_which_names_look_like_secrets(name, secret):
    from vllm_launcher.preset.plan import looks_secret

    assert looks_secret(name) is secret


@pytest.mark.parametrize(("fmt", "device"), [
    ("shell", "cpu"), ("json", "cpu"), ("docker", "cuda"), ("compose", "cuda"), ("k8s", "cuda"),
    ("systemd", "cpu"),
])
def test_no_format_renders_a_secret_written_in_env(tmp_path, fmt, device):
    env = isolated_env(tmp_path)
    preset = secret_preset(env, device)
    result = run_cli(["render", preset, "--format", fmt, "-o", str(tmp_path / "out")]
                     if fmt not in ("shell", "json") else ["render", preset, "--format", fmt], env)
    assert result.returncode == 0, result.stderr
    text = result.stdout + "".join(p.read_text() for p in (tmp_path / "out").rglob("*") if p.is_file())
    for value in WRITTEN.values():
        assert value not in text, (fmt, value)
    assert "visible" in text and "OPENAI_API_KEY" in text and "MY_GH_TOKEN" in text
    if fmt == "json":
        rendered = json.loads(result.stdout)["env"]
        assert rendered["OPENAI_API_KEY"] == "${OPENAI_API_KEY}" and rendered["GH_TOKEN"] == "${MY_GH_TOKEN}"
        assert rendered["PLAIN_SETTING"] == "visible"


def test_doctor_names_each_secret_written_in_env_and_an_unset_reference(tmp_path):
    env = isolated_env(tmp_path)
    preset = secret_preset(env)
    env.pop("MY_GH_TOKEN", None)
    result = run_cli(["doctor", preset, "--json"], env)
    findings = json.loads(result.stdout)["findings"]
    written = sorted(f["message"].split()[1] for f in findings if f["code"] == "VL315")
    assert written == sorted(WRITTEN)
    assert all(v not in result.stdout for v in WRITTEN.values())  # the finding names it, never its value
    unset = [f["message"] for f in findings if f["code"] == "VL311"]
    assert any("GH_TOKEN comes from $MY_GH_TOKEN" in m for m in unset)
