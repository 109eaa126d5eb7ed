"""The preset fields the gateway reads: validated like every field, rendered where they reach vLLM."""

from __future__ import annotations

import json

import pytest
import yaml
from cli_helpers import isolated_env, run_cli, user_presets_dir


def write(env: dict[str, str], name: str, text: str) -> None:
    (user_presets_dir(env) / f"{name}.yaml").write_text(text)


def test_sleep_when_idle_renders_the_flag_in_order_and_dev_mode_env(tmp_path):
    env = isolated_env(tmp_path)
    write(env, "sleepy", "extends: gpu-7b\nsleep_when_idle: true\nkv_cache_dtype: fp8\n"
                         "kv_cache_space_gib: 8\n")
    rendered = run_cli(["render", "sleepy", "--format", "json"], env)
    assert rendered.returncode == 0, rendered.stderr
    plan = json.loads(rendered.stdout)
    argv = plan["argv"]
    flags = ("--kv-cache-dtype", "--enable-sleep-mode", "--kv-cache-memory-bytes")
    order = [argv.index(flag) for flag in flags]
    assert order == sorted(order)
    assert plan["env"]["VLLM_SERVER_DEV_MODE"] == "1"
    plain = json.loads(run_cli(["render", "gpu-7b", "--format", "json"], env).stdout)
    assert "--enable-sleep-mode" not in plain["argv"] and "VLLM_SERVER_DEV_MODE" not in plain["env"]


def test_gateway_fields_show_with_their_values(tmp_path):
    env = isolated_env(tmp_path)
    write(env, "routed", "extends: gpu-7b\naliases: [coder, fast]\nkeep_loaded: true\nidle_timeout: 10m\n"
                         "max_waiting: 8\ngpus: [1]\n")
    shown = run_cli(["show", "routed"], env)
    assert shown.returncode == 0, shown.stderr
    preset = yaml.safe_load(shown.stdout)
    assert preset["aliases"] == ["coder", "fast"] and preset["keep_loaded"] is True
    assert preset["idle_timeout"] == 600 and preset["max_waiting"] == 8 and preset["gpus"] == [1]


@pytest.mark.parametrize(("line", "field"), [
    ("idle_timeout: soon", "idle_timeout"),
    ("idle_timeout: -5", "idle_timeout"),
    ("max_waiting: -1", "max_waiting"),
    ("aliases: [\"bad\\u0007name\"]", "aliases"),
    ("aliases: [\"\"]", "aliases"),
    ("gpus: [-1]", "gpus"),
    ("keep_loaded: maybe", "keep_loaded"),
    ("sleep_when_idle: 3", "sleep_when_idle"),
])
def test_bad_gateway_fields_are_one_line_naming_the_field(tmp_path, line, field):
    env = isolated_env(tmp_path)
    write(env, "bad", f"extends: gpu-7b\n{line}\n")
    result = run_cli(["render", "bad"], env)
    assert result.returncode == 2, result.stdout
    assert field in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
