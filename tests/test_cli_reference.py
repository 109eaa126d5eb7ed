"""docs/cli.md is the real `--help` of every command (scripts/cli_reference.py writes it)."""

from __future__ import annotations

import sys

from cli_helpers import REPO


def test_the_cli_reference_is_up_to_date():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import cli_reference
    finally:
        sys.path.remove(str(REPO / "scripts"))
    expected = cli_reference.reference()
    assert (REPO / "docs" / "cli.md").read_text(encoding="utf-8") == expected, (
        "docs/cli.md is out of date: run python scripts/cli_reference.py")
    for name in ("render", "up", "doctor", "status", "down"):
        assert f"## vllm-launch {name}" in expected and "Usage: vllm-launch" in expected
