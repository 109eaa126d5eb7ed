"""The merge machinery of `launch` on its own (vllm_launcher.clients.edits, toml_text): any string survives
the TOML writer; our Codex table joins any TOML file of tables and leaves it byte for byte on --restore;
lines a user put after our block are not silently moved into another table."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from vllm_launcher.base.errors import ConfigError
from vllm_launcher.clients.edits import END, TomlBlock
from vllm_launcher.clients.toml_text import toml_string, toml_table
from vllm_launcher.clients.writing import FileState

BLOCK = TomlBlock(Path("config.toml"), ("model_providers", "vllm-launch"),
                  {"name": "vllm-launch", "base_url": "http://127.0.0.1:8080/v1", "wire_api": "responses"},
                  "a model provider in Codex's config")
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=10)
scalars = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20))


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40))
def test_any_string_survives_the_toml_writer(value):
    quoted = toml_string(value)
    assert tomllib.loads(f"key = {quoted}\n{quoted} = 1\n") == {"key": value, value: 1}


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(names.filter(lambda n: n != "model_providers"),
                       st.dictionaries(names, scalars, max_size=4), max_size=4),
       st.dictionaries(names, scalars, max_size=3), st.booleans())
def test_our_table_joins_any_file_and_restore_gives_it_back_byte_for_byte(tables, root, crlf):
    assume(not set(tables) & set(root))  # a key and a table of one name: not TOML to begin with
    text = toml_table((), root) if root else ""
    text += "".join("\n" + toml_table((name,), values) for name, values in tables.items())
    if crlf:
        text = text.replace("\n", "\r\n")
    merged = BLOCK.plan(FileState("config.toml", Path("config.toml"), text or None), {})
    assert merged.text is not None and merged.text.startswith(text)
    assert tomllib.loads(merged.text) == {**tomllib.loads(text),
                                          "model_providers": {"vllm-launch": BLOCK.values}}
    if "\r\n" in text:
        assert "\n" not in merged.text.replace("\r\n", "")  # a CRLF file gets CRLF lines
    again = BLOCK.plan(FileState("config.toml", Path("config.toml"), merged.text), {})
    assert again.text == merged.text  # a second run changes nothing
    restored = BLOCK.unplan(FileState("config.toml", Path("config.toml"), merged.text), {})
    assert restored is not None and restored.text == text


def test_lines_after_our_block_are_not_moved_into_another_table():
    user = "[features]\nplugins = false\n"
    merged = BLOCK.plan(FileState("config.toml", Path("config.toml"), user), {}).text
    assert merged is not None
    appended = merged + "extra = 1\n"  # TOML puts this in our table
    with pytest.raises(ConfigError, match="lines after vllm-launch's block belong to its table"):
        BLOCK.unplan(FileState("config.toml", Path("config.toml"), appended), {})
    assert merged.rstrip("\n").endswith(END)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=5), st.booleans())
def test_json_entries_merge_and_restore_to_the_users_data(user, had_env):
    import json

    from vllm_launcher.clients.edits import JsonEntries

    if had_env:
        user = {**user, "env": {"MINE": "1", "CLAUDE_CODE_ATTRIBUTION_HEADER": "1"}}
    edit = JsonEntries(Path("settings.json"), {("env", "CLAUDE_CODE_ATTRIBUTION_HEADER"): "0"}, "settings")
    text = json.dumps(user, indent=4)
    try:
        change = edit.plan(FileState("settings.json", Path("settings.json"), text), {})
    except ConfigError:  # "env" is there but not an object: refused, never changed
        assert not isinstance(user.get("env"), dict)
        return
    assert change.text is not None and change.ledger is not None
    merged = json.loads(change.text)
    assert merged["env"]["CLAUDE_CODE_ATTRIBUTION_HEADER"] == "0"
    assert {k: v for k, v in merged.items() if k != "env"} == {k: v for k, v in user.items() if k != "env"}
    restored = edit.unplan(FileState("settings.json", Path("settings.json"), change.text), change.ledger)
    assert restored is not None and restored.text is not None and json.loads(restored.text) == user
