"""The README's first screen agrees with the tool: the set-up is two commands that work as written, the
quick start says how to reach `vllm-launch`, the preset table lists exactly the built-in presets with
their models, the sample output is what `render` prints (the venv's interpreter), and the names the
README uses ("the guide", Victor) are introduced before they are used."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from cli_helpers import isolated_env, run_cli

from vllm_launcher.preset.schema import resolve

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
SAMPLE_PYTHON = "/home/you/vllm-launch/.venv/bin/python"


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def test_set_up_is_two_commands_and_what_each_does():
    commands = [line for line in code_blocks(section("Set up"), "bash")[0].splitlines() if line.strip()]
    assert [c.split("#")[0].strip() for c in commands] == ["scripts/install.sh",
                                                           ".venv/bin/vllm-launch up demo"]
    assert all(re.search(r"# [12]\. \S", c) for c in commands)  # each says what it does
    assert (ROOT / "scripts" / "install.sh").is_file()
    install = (ROOT / "scripts" / "install.sh").read_text()
    assert 'extras="${1:-cpu,test}"' in install  # `scripts/install.sh gpu,test` takes the GPU extra
    assert "scripts/install.sh gpu,test" in section("Set up")
    assert 'gpu = ["vllm"]' in (ROOT / "pyproject.toml").read_text()
    demo = resolve("demo").preset
    assert f"http://127.0.0.1:{demo.port}" in section("Set up")
    assert "torchvision" not in README[:README.index("\n## Overrides")]  # not a newcomer's first worry


def test_quick_start_says_how_to_reach_the_command():
    quick = section("Quick start")
    first_bare = quick.index("\nvllm-launch ")
    assert "source .venv/bin/activate" in quick[:first_bare]


def test_the_preset_table_lists_the_built_in_presets_and_their_models():
    table = section("Presets").split("### Preset format")[0]
    rows = re.findall(r"^\| `([^`]+)` \| (\S+) \|", table, re.MULTILINE)
    builtin = sorted(p.stem for p in (ROOT / "presets").glob("*.yaml"))
    assert sorted(name for name, _model in rows) == builtin
    for name, model in rows:
        assert resolve(name).preset.model == model, name


def test_the_sample_output_is_what_render_prints(tmp_path):
    quick = section("Quick start")
    block = code_blocks(quick, "console")[0]
    command, expected = block.split("\n", 1)
    assert command.startswith("$ vllm-launch ")
    result = run_cli(command[len("$ vllm-launch "):].split(), isolated_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert SAMPLE_PYTHON.endswith("/.venv/bin/python") and SAMPLE_PYTHON in expected
    assert result.stdout.replace(sys.executable, SAMPLE_PYTHON) == expected


def test_the_guide_and_victor_are_introduced_before_use():
    body = " ".join(" ".join(line for line in README.splitlines() if not line.startswith("#")).split())
    introduced = body.index("a setup guide (*the guide* below)")
    assert body.lower().index("guide") >= introduced - len("vllm-launch grew out of a setup ")
    assert body.index("Victor") == body.index("Victor, a coding agent")
