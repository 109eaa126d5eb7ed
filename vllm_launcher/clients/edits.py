"""The entries a client wants in its own config files, and how each is merged into what the user has.

Four kinds, each checked by reading the result back (it must mean the user's file plus our entry, or the
edit is refused with what to do by hand):
- `JsonEntries`: keys at paths in a JSON object (Claude Code's settings.json, opencode.json, aider's model
  metadata). JSON has no comments, so what we own is kept in the ledger (clients.writing), with the value
  that was there before.
- `TomlBlock`: one table in a TOML file (Codex's config.toml), between two marker comments; the rest of
  the file stays byte for byte.
- `OwnFile`: a whole file that is ours (Codex's profile file), a marker comment on its first line.
- `YamlProfile`: the guide's agent's `vllm:` profile (client_config.placed_profile), ledger-owned.

`plan(state, owned)` says what a write would do (a `Change`: the new text and a line saying so), and
`unplan(state, owned)` what `--restore` would do; neither writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vllm_launcher.base.errors import ConfigError
from vllm_launcher.clients.writing import ABSENT, FileState

MARK = "vllm-launch"
BEGIN = "# >>> vllm-launch: written by `vllm-launch launch`; `vllm-launch launch CLIENT --restore` removes it"
END = "# <<< vllm-launch"
OWN_FILE_MARK = "# written by `vllm-launch launch`; `vllm-launch launch CLIENT --restore` removes this file"


@dataclass
class Change:
    """What one edit does to one file: TEXT (None: the file is removed), a line for the user, the entry as
    it will read (for --print), and the ledger entries to record (None: no ledger)."""

    path: Path
    before: FileState
    text: str | None
    summary: str
    shown: str = ""
    ledger: dict | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return self.text != self.before.text


def _newline(text: str | None) -> str:
    return "\r\n" if text and "\r\n" in text else "\n"


def _with_newlines(text: str, newline: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", newline) if newline != "\n" else text


# ------------------------------------------------------------------------------------------------ JSON


def _load_json(state: FileState) -> dict:
    if state.text is None or not state.text.strip():
        return {}
    try:
        data = json.loads(state.text)
    except ValueError as exc:
        line = getattr(exc, "lineno", "?")
        raise ConfigError(f"line {line}: not JSON ({getattr(exc, 'msg', exc)}); fix it, or add the entry by "
                          "hand", source=state.shown) from None
    if not isinstance(data, dict):
        raise ConfigError(f"expected a JSON object, found {type(data).__name__}", source=state.shown)
    return data


def _get(data: dict, keys: tuple[str, ...]) -> Any:
    node: Any = data
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return ABSENT
        node = node[key]
    return node


def _set(data: dict, keys: tuple[str, ...], value: Any, source: str) -> None:
    node = data
    for depth, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(keys[:depth + 1])} is a {type(child).__name__}, not an object: "
                              "cannot add our entry under it", source=source)
        node = child
    node[keys[-1]] = value


def _delete(data: dict, keys: tuple[str, ...], created: list[str]) -> None:
    """Remove the entry at KEYS, then the parents we created that it leaves empty."""
    parents = [data]
    node: Any = data
    for key in keys[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return
        parents.append(node)
    node.pop(keys[-1], None)
    for depth in range(len(keys) - 1, 0, -1):
        if not parents[depth] and json.dumps(list(keys[:depth])) in created:
            parents[depth - 1].pop(keys[depth - 1], None)


def _dump_json(data: dict, newline: str) -> str:
    return _with_newlines(json.dumps(data, indent=2, ensure_ascii=False) + "\n", newline)


@dataclass(frozen=True)
class JsonEntries:
    path: Path
    entries: dict[tuple[str, ...], Any]
    what: str

    def plan(self, state: FileState, owned: dict) -> Change:
        data = _load_json(state)
        ledger: dict = {}
        notes: list[str] = []
        for keys, value in self.entries.items():
            ledger[json.dumps(list(keys))] = self._place(data, keys, value, owned, state.shown, notes)
        text = _dump_json(data, _newline(state.text))
        if state.text is not None and data == _load_json(state):
            text = state.text  # nothing to change: the file stays byte for byte
        shown = json.dumps(_nest(self.entries), indent=2, ensure_ascii=False)
        return Change(self.path, state, text, self.what, shown, ledger, notes)

    @staticmethod
    def _place(data: dict, keys: tuple[str, ...], value: Any, owned: dict, source: str,
               notes: list[str]) -> dict:
        """Set KEYS to VALUE in DATA; the ledger entry for it (what we wrote, what was there before)."""
        current = _get(data, keys)
        mine = owned.get(json.dumps(list(keys)))
        dotted = ".".join(keys)
        if mine is not None and current not in (ABSENT, mine.get("wrote"), value):
            raise ConfigError(f"{dotted} was changed since vllm-launch wrote it: remove it (or run "
                              "--restore) to let vllm-launch write it again", source=source)
        if mine is not None:
            before, created = mine.get("before", ABSENT), mine.get("created", [])
        else:
            before = current
            created = [json.dumps(list(keys[:n])) for n in range(1, len(keys))
                       if _get(data, keys[:n]) == ABSENT]
            if current not in (ABSENT, value):
                notes.append(f"replaces your {dotted} ({json.dumps(current)[:60]}); --restore puts it back")
        _set(data, keys, value, source)
        return {"wrote": value, "before": before, "created": created}

    def unplan(self, state: FileState, owned: dict) -> Change | None:
        if state.text is None or not owned:
            return None
        data = _load_json(state)
        notes = []
        for key, mine in owned.items():
            if key.startswith("__"):  # the file's own facts (e.g. created by us), not an entry
                continue
            keys = tuple(json.loads(key))
            current = _get(data, keys)
            if current == ABSENT:
                continue
            if current != mine.get("wrote"):
                notes.append(f"left {'.'.join(keys)}: changed since vllm-launch wrote it")
                continue
            before = mine.get("before", ABSENT)
            if before == ABSENT:
                _delete(data, keys, mine.get("created", []))
            else:
                _set(data, keys, before, state.shown)
        text: str | None = _dump_json(data, _newline(state.text)) if data != _load_json(state) else state.text
        if not data and owned.get("__file_created__"):
            text = None
        what = f"removes vllm-launch's entries from {self.what}"
        return Change(self.path, state, text, what, "", {}, notes)


def _nest(entries: dict[tuple[str, ...], Any]) -> dict:
    nested: dict = {}
    for keys, value in entries.items():
        _set(nested, keys, value, "")
    return nested


# ------------------------------------------------------------------------------------------------ TOML


def _toml(text: str, source: str) -> dict:
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not TOML ({exc}); fix it, or add the entry by hand", source=source) from None


def _split_block(text: str) -> tuple[str, str, str] | None:
    """(before, our block with its markers, after), or None when the file has no block of ours."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith(BEGIN.split(":")[0] + ":")), None)
    if start is None:
        return None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].rstrip("\r\n") == END), None)
    if end is None:
        return None
    return "".join(lines[:start]), "".join(lines[start:end + 1]), "".join(lines[end + 1:])


def _without(data: dict, keys: tuple[str, ...], kept: dict) -> dict:
    """DATA without the table at KEYS, and without the parent tables that leaves empty unless KEPT (the
    file read without our block) still has them."""
    result = json.loads(json.dumps(data, default=str))
    nodes = [result]
    for key in keys[:-1]:
        nodes.append(nodes[-1].get(key, {}))
    nodes[-1].pop(keys[-1], None)
    for depth in range(len(keys) - 1, 0, -1):
        if not nodes[depth] and _get(kept, keys[:depth]) == ABSENT:
            nodes[depth - 1].pop(keys[depth - 1], None)
    return result


@dataclass(frozen=True)
class TomlBlock:
    path: Path
    table: tuple[str, ...]
    values: dict[str, Any]
    what: str

    def block(self, newline: str) -> str:
        from vllm_launcher.clients.toml_text import toml_table

        return _with_newlines(f"{BEGIN}\n{toml_table(self.table, self.values)}{END}\n", newline)

    def plan(self, state: FileState, owned: dict) -> Change:
        text = state.text or ""
        newline = _newline(text)
        split = _split_block(text)
        before, after = (split[0], split[2]) if split else (text, "")
        rest = before + after
        rest_data = _toml(rest, state.shown)
        if _get(rest_data, self.table) != ABSENT:
            raise ConfigError(f"it already has a [{'.'.join(self.table)}] table that vllm-launch did not "
                              "write: rename or remove it", source=state.shown)
        if split is None:
            if before and not before.endswith(("\n", "\r")):
                before += newline
            if before.strip():
                before += newline
        block = self.block(newline)
        new = before + block + after
        expected = json.loads(json.dumps(rest_data, default=str))
        _set(expected, self.table, dict(self.values), state.shown)
        try:
            merged = json.loads(json.dumps(_toml(new, state.shown), default=str))
        except ConfigError:
            merged = None  # e.g. `model_providers = {...}` inline: a table cannot be added to it
        if merged != expected:
            raise ConfigError(f"cannot add [{'.'.join(self.table)}] without changing the meaning of the rest "
                              "(an inline table?): add it by hand", source=state.shown)
        return Change(self.path, state, new, self.what, block.rstrip("\r\n"))

    def unplan(self, state: FileState, owned: dict) -> Change | None:
        split = _split_block(state.text or "")
        if split is None:
            return None
        before, _block, after = split
        if before.endswith(("\n\n", "\r\n\r\n")) and not after.strip():  # the blank line we added
            before = before[:-2] if before.endswith("\r\n\r\n") else before[:-1]
        new = before + after
        data = _toml(state.text or "", state.shown)
        new_data = _toml(new, state.shown)
        if json.loads(json.dumps(new_data, default=str)) != _without(data, self.table, new_data):
            raise ConfigError("lines after vllm-launch's block belong to its table; move them above the "
                              f"'{BEGIN[:18]}' line, then --restore", source=state.shown)
        return Change(self.path, state, new, f"removes [{'.'.join(self.table)}] from {self.what}")


@dataclass(frozen=True)
class OwnFile:
    path: Path
    body: str  # without the marker line
    what: str

    def plan(self, state: FileState, owned: dict) -> Change:
        if state.text is not None and not state.text.startswith(OWN_FILE_MARK):
            raise ConfigError("exists and was not written by vllm-launch: remove or rename it",
                              source=state.shown)
        text = f"{OWN_FILE_MARK}\n{self.body}"
        return Change(self.path, state, text, self.what, text.rstrip("\n"))

    def unplan(self, state: FileState, owned: dict) -> Change | None:
        if state.text is None or not state.text.startswith(OWN_FILE_MARK):
            return None
        return Change(self.path, state, None, f"removes {self.what}")


# ------------------------------------------------------------------------------------------------ YAML


@dataclass(frozen=True)
class YamlProfile:
    path: Path
    entry: dict
    what: str

    def plan(self, state: FileState, owned: dict) -> Change:
        from vllm_launcher.clients.agent_profile import (
            PROFILE_KEY,
            current_profile,
            placed_profile,
            profile_yaml,
        )

        current = current_profile(state.text, state.shown)
        mine = owned.get(PROFILE_KEY)
        notes = []
        if mine is not None and current is not None and current != mine.get("wrote"):
            raise ConfigError(f"its {PROFILE_KEY}: profile was changed since vllm-launch wrote it: remove it "
                              "(or run --restore) to let vllm-launch write it again", source=state.shown)
        text = placed_profile(state.text, self.entry, state.shown)
        placed = current_profile(text, state.shown)
        if mine is None and current is not None:
            notes.append(f"updates your {PROFILE_KEY}: profile; --restore puts it back")
        before = mine.get("before", ABSENT) if mine is not None else (ABSENT if current is None else current)
        return Change(self.path, state, text, self.what, profile_yaml(self.entry).rstrip("\n"),
                      {PROFILE_KEY: {"wrote": placed, "before": before}}, notes)

    def unplan(self, state: FileState, owned: dict) -> Change | None:
        from vllm_launcher.clients.agent_profile import (
            PROFILE_KEY,
            current_profile,
            placed_profile,
            removed_profile,
        )

        mine = owned.get(PROFILE_KEY)
        if state.text is None or mine is None:
            return None
        current = current_profile(state.text, state.shown)
        if current is None:
            return None
        if current != mine.get("wrote"):
            return Change(self.path, state, state.text, f"leaves {self.what}",
                          notes=[f"left its {PROFILE_KEY}: profile: changed since vllm-launch wrote it"])
        before = mine.get("before", ABSENT)
        text: str | None = (removed_profile(state.text, state.shown) if before == ABSENT
                            else placed_profile(state.text, before, state.shown, replace=True))
        if text is not None and not text.strip() and owned.get("__file_created__"):
            text = None  # the file was ours alone
        return Change(self.path, state, text, f"restores the {PROFILE_KEY}: profile in {self.what}")


Edit = JsonEntries | TomlBlock | OwnFile | YamlProfile
