"""One validator for every name (vllm_launcher.base.inputs.name_problem): preset names, `--save` names, server
names, served model names and gateway aliases. Every command that takes a name, given a hostile one, exits
2 with one line on stderr that says what is valid, never a traceback (hypothesis, plus the cases seen)."""

from __future__ import annotations

import json
import string

import pytest
from cli_helpers import isolated_env, run_cli, user_presets_dir
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vllm_launcher.base.inputs import ALIAS_NAME, PRESET_NAME, SERVED_NAME, SERVER_NAME, name_problem

NAME_CHARS = string.ascii_letters + string.digits + "._-"
# Characters no kind of name allows: whitespace and control characters, shell and YAML syntax, non-ASCII.
FORBIDDEN = " \t\n\r\x00\x07\x1b\"'`$;&|<>*?!#%^=,()[]{}\\~ü😀\u202e"


def _too_long(limit: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="abc123", min_size=limit + 1, max_size=limit + 300)


@st.composite
def _with_forbidden(draw: st.DrawFn) -> str:
    head = draw(st.text(alphabet=NAME_CHARS, max_size=20))
    bad = draw(st.text(alphabet=FORBIDDEN, min_size=1, max_size=3))
    tail = draw(st.text(alphabet=NAME_CHARS, max_size=20))
    return "a" + head + bad + tail


def hostile(limit: int) -> st.SearchStrategy[str]:
    """Names no kind whose limit is LIMIT accepts: too long, a forbidden character, a leading '-', '.' or
    '_', '..' inside, or empty."""
    return st.one_of(
        _too_long(limit),
        _with_forbidden(),
        st.builds(lambda lead, rest: lead + rest, st.sampled_from("-._"),
                  st.text(alphabet=NAME_CHARS, max_size=30)),
        st.builds(lambda a, b: f"a{a}..{b}", st.text(alphabet="abc", max_size=5),
                  st.text(alphabet="abc", max_size=5)),
        st.just(""),
    )


def _one_line_usage_error(result) -> None:
    assert result.returncode == 2, (result.args, result.returncode, result.stdout[-300:], result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("vllm-launch: error: "), result.stderr


# Every command that takes a preset, save, server or gateway name, with NAME where the name goes.
# Each only reads or checks before it would do anything (up: --dry-run; gateway: --render).
NAME_COMMANDS = {
    "show": ["show", "NAME"],
    "render": ["render", "NAME"],
    "estimate": ["estimate", "NAME"],
    "doctor": ["doctor", "NAME"],
    "up preset": ["up", "NAME", "--dry-run"],
    "up --name": ["up", "demo", "--name", "NAME", "--dry-run"],
    "fit --save": ["fit", "Qwen/Qwen2.5-7B-Instruct", "--device", "cpu", "--ram-gib", "64", "--save", "NAME"],
    "recipes --save": ["recipes", "Qwen/Qwen2.5-7B-Instruct", "--dir", "NOWHERE", "--save", "NAME"],
    "status": ["status", "NAME"],
    "logs": ["logs", "NAME"],
    "down": ["down", "NAME"],
    "gateway --name": ["gateway", "--name", "NAME", "--render", "systemd"],
}
# The commands whose NAME is checked as a name (the others take a preset reference, which may be a path:
# theirs is "unknown preset" or "no such file", also one line).
NAME_KIND = {"fit --save": "preset name", "recipes --save": "preset name", "up --name": "server name",
             "status": "server name", "logs": "server name", "down": "server name",
             "gateway --name": "server name"}
# Served model names and aliases: longer and with '/', ':' (repo ids, tags), so their own limit.
SERVED_COMMANDS = {
    "--set served_model_name": ["render", "demo", "--set", "served_model_name=NAME"],
    "--set aliases": ["render", "demo", "--set", "aliases=ALIASES"],
}


def _argv(template: list[str], name: str, tmp_path) -> list[str]:
    def fill(arg: str) -> str:
        if "ALIASES" in arg:
            return arg.replace("ALIASES", json.dumps([name]))
        if arg == "NOWHERE":
            return str(tmp_path / "no-recipes")
        return arg.replace("NAME", name)

    return [fill(arg) for arg in template]


SEEN = ["a" * 300, "a" * 65, "-rf", "", " ", "x\ny", "ünï", "a\x00b", ".", "..", "a..b", "😀", "$(id)", "a b"]


@pytest.mark.parametrize("command", sorted(NAME_COMMANDS))
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=hostile(PRESET_NAME.max_length))
@example(name="a" * 300)  # `fit --save` printed pydantic's traceback for this
@example(name="nul.yaml")  # a preset of that name could never be found: it is read as a file
def test_every_command_refuses_a_hostile_name_in_one_line(command, name, tmp_path):
    result = run_cli(_argv(NAME_COMMANDS[command], name, tmp_path), isolated_env(tmp_path))
    _one_line_usage_error(result)
    if command in NAME_KIND and not name.startswith("-"):  # ("-x" as an argument is an unknown option)
        assert f"is not a {NAME_KIND[command]}" in result.stderr, result.stderr


@pytest.mark.parametrize("command", sorted(SERVED_COMMANDS))
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=hostile(SERVED_NAME.max_length))
@example(name="a" * 300)
def test_served_names_and_aliases_refuse_a_hostile_name_in_one_line(command, name, tmp_path):
    result = run_cli(_argv(SERVED_COMMANDS[command], name, tmp_path), isolated_env(tmp_path))
    _one_line_usage_error(result)
    assert "is not a served model name" in result.stderr or "is not an alias" in result.stderr, result.stderr
    assert "use 1-256 of letters" in result.stderr


def test_a_preset_file_with_a_hostile_name_names_its_line(tmp_path):
    env = isolated_env(tmp_path)
    preset = user_presets_dir(env) / "mine.yaml"
    preset.write_text(json.dumps({"name": "a" * 300, "model": "Qwen/Qwen2.5-7B-Instruct"}))
    result = run_cli(["show", str(preset)], env)
    _one_line_usage_error(result)
    assert f"{preset}:1: name: " in result.stderr and "(300 characters)" in result.stderr


@pytest.mark.parametrize("name", SEEN)
def test_the_same_message_for_every_kind(name):
    problems = {kind.what: name_problem(name, kind) for kind in (PRESET_NAME, SERVER_NAME)}
    for what, problem in problems.items():
        assert problem is not None and f"is not a {what}" in problem, (name, problem)
        assert "starting with a letter or digit" in problem and "\n" not in problem
    if len(name) <= SERVED_NAME.max_length and name not in ("a" * 65,):
        assert "is not a served model name" in name_problem(name, SERVED_NAME)
        assert "is not an alias" in name_problem(name, ALIAS_NAME)


@pytest.mark.parametrize("name", ["demo", "coder-7b", "Qwen2.5-7B", "a" * 64, "x_y.z"])
def test_good_preset_names_pass(name):
    assert name_problem(name, PRESET_NAME) is None and name_problem(name, SERVER_NAME) is None


@pytest.mark.parametrize("name", ["Qwen/Qwen2.5-7B-Instruct", "qwen2.5-coder:7b", "gpt-4o", "model@v2",
                                  "a" * 256])
def test_served_names_take_repo_ids_and_tags(name):
    assert name_problem(name, SERVED_NAME) is None and name_problem(name, ALIAS_NAME) is None


def test_fit_names_a_long_model_directory_within_the_limit(tmp_path):
    from vllm_launcher.memory.fit import _slug

    slug = _slug(str(tmp_path / ("Very-Long-Model-Name" * 10 + "..v2.yaml")))
    assert name_problem("fit-" + slug, PRESET_NAME) is None
