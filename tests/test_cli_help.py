"""`vllm-launch --help` lists every command with its whole description, wrapped to the terminal, never cut
with "..." (click's default short help stops at the width)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vllm_launcher.cli.table import COMMANDS


@pytest.mark.parametrize("columns", ["80", "120"])
def test_the_command_list_shows_each_description_whole(isolated_xdg, columns):
    env = {**isolated_xdg, "COLUMNS": columns}
    shown = subprocess.run([sys.executable, "-m", "vllm_launcher", "--help"], env=env, capture_output=True,
                           text=True, timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    listing = shown.stdout.split("Commands:", 1)[1]
    assert "..." not in listing
    assert all(len(line) <= int(columns) for line in listing.splitlines())
    words = " ".join(listing.split())
    for command in COMMANDS:
        assert f"{command.name} {' '.join(command.help.split())}" in words, command.name
