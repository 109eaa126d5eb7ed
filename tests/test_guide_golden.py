"""The seed guide's six api_server commands, reproduced by presets + overrides, flag by flag."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest
from cli_helpers import isolated_env, render_json

GUIDE = Path(__file__).parent / "fixtures" / "guide_commands"
CASES = [
    ("1-gpu-7b.sh", ["gpu-7b"]),
    ("2-gpu-7b-util-0.9.sh", ["gpu-7b", "--gpu-memory-utilization", "0.9"]),
    ("3-gpu-32b-tp2.sh", ["gpu-32b-tp2"]),
    ("4-cpu-test.sh", ["cpu-test"]),
    ("5-cpu-16k.sh", ["cpu-16k"]),
    ("6-cpu-16k-kv-cache-8.sh", ["cpu-16k", "--kv-cache", "8"]),
]
# The one deliberate addition: the safe default bind address (vLLM's own default is all interfaces).
ADDED = [("--host", "127.0.0.1")]


def parse_command(words: list[str]) -> tuple[dict[str, str], list[str]]:
    env = {}
    while "=" in words[0] and not words[0].startswith("-"):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    return env, words


def flag_pairs(args: list[str]) -> list[tuple[str, str | None]]:
    """['--a', '1', '--b'] -> [('--a', '1'), ('--b', None)]."""
    pairs: list[tuple[str, str | None]] = []
    for word in args:
        if word.startswith("--"):
            pairs.append((word, None))
        else:
            flag, value = pairs[-1]
            assert value is None, f"two values for {flag}"
            pairs[-1] = (flag, word)
    return pairs


@pytest.mark.parametrize(("fixture", "args"), CASES, ids=[c[0] for c in CASES])
def test_render_reproduces_guide_command(fixture: str, args: list[str], tmp_path: Path) -> None:
    guide_env, guide_words = parse_command(shlex.split((GUIDE / fixture).read_text().replace("\\\n", " ")))
    assert guide_words[:3] == ["python", "-m", "vllm.entrypoints.openai.api_server"]
    rendered = render_json(args, isolated_env(tmp_path))

    assert rendered["argv"][0] == sys.executable
    assert rendered["argv"][1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert rendered["env"] == guide_env
    got = flag_pairs(rendered["argv"][3:])
    expected = flag_pairs(guide_words[3:])
    # Flag by flag, in the guide's order, with --host inserted before --port.
    port_at = expected.index(("--port", "8000"))
    assert got == expected[:port_at] + ADDED + expected[port_at:]


def test_every_guide_command_has_a_case() -> None:
    assert sorted(p.name for p in GUIDE.glob("*.sh")) == sorted(c[0] for c in CASES)
