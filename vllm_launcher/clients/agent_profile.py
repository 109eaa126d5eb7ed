"""The client's side of a server: the guide's agent profile (the `vllm:` entry of its profiles.yaml) and the
OpenAI SDK environment.

Rendering is pure and goes through the YAML dumper. `--client-config FILE` sets the `vllm:` entry of the
user's profiles file: only that block's text changes (the rest stays byte for byte, comments included),
the result is read back and must equal the old profiles plus the new entry, a file that cannot be edited
so is refused before anything starts, and the write is atomic, through symlinks, with the file's mode.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

from vllm_launcher.base.errors import ConfigError
from vllm_launcher.preset.yaml_files import compose_yaml

CPU_TIMEOUT_S = 300  # the guide's value: a CPU answers slowly
GPU_TIMEOUT_S = 120
MAX_PROFILES_BYTES = 1 << 20
PROFILE_KEY = "vllm"


def profile_entry(base_url: str, device: str) -> dict:
    """The guide's `vllm:` profile for a server at BASE_URL (the OpenAI base, .../v1)."""
    return {"base_url": base_url, "timeout": CPU_TIMEOUT_S if device == "cpu" else GPU_TIMEOUT_S}


def gateway_entry(base_url: str) -> dict:
    """The profile for a gateway: the guide's CPU timeout, since a request may wait for a cold start."""
    return {"base_url": base_url, "timeout": CPU_TIMEOUT_S}


def profile_yaml(entry: dict) -> str:
    """The entry as profiles.yaml text (`vllm:` and its keys), through the YAML dumper."""
    return yaml.safe_dump({PROFILE_KEY: entry}, sort_keys=False, default_flow_style=False, allow_unicode=True)


def sdk_env_lines(base_url: str, key_env: str | None) -> list[str]:
    """The OpenAI SDK's environment for this server (openai, LangChain, LiteLLM and most agents read it):
    the key by reference to the user's variable, never its value."""
    key = f'"${key_env}"' if key_env else "EMPTY  # any value: this server checks no key"
    return [f"  export OPENAI_BASE_URL={shlex.quote(base_url)}", f"  export OPENAI_API_KEY={key}"]


@dataclass(frozen=True)
class ProfileWrite:
    """A checked `--client-config` write: the real file (symlinks followed), its text when read (None: no
    file yet), what to write, and the entry (to place it again if the file changes before the write)."""

    source: str
    target: Path
    original: str | None
    text: str
    entry: dict


def _profiles_node(existing: str, source: str) -> tuple[dict, yaml.MappingNode]:
    data, node, _ = compose_yaml(existing, source, what="a profiles file", hint="write the entries out")
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode) or node.flow_style:
        raise ConfigError("expected a block mapping of profiles (`name:` lines), found "
                          f"{type(data).__name__ if not isinstance(data, dict) else 'a {...} flow mapping'}",
                          source=source)
    return data, node


def _content_end(existing: str, node: yaml.Node) -> int:
    """Where NODE's text ends: the end of the line of its last scalar. PyYAML ends a block mapping where the
    next key starts, so comment lines after it (at column 0, before the next profile) would count as its
    own; they are the next profile's, and stay."""
    while isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(node, yaml.MappingNode) else last
    end = node.end_mark.index
    if end > 0 and existing[end - 1] == "\n":
        return end
    newline = existing.find("\n", end)
    return len(existing) if newline < 0 else newline + 1


def _profile_span(existing: str, node: yaml.MappingNode, base_url: str,
                  source: str) -> tuple[int, int] | None:
    """(start, end) of the `vllm:` block's text, or None when there is none; ConfigError when rewriting it
    would drop a comment (or it is indented)."""
    found = next(((k, v) for k, v in node.value if k.value == PROFILE_KEY), None)
    if found is None:
        return None
    key, value = found
    start, end = key.start_mark.index, _content_end(existing, value)
    if "#" in existing[start:end] or key.start_mark.column != 0:
        raise ConfigError(f"its {PROFILE_KEY}: entry has comments (or is indented) that a rewrite would "
                          f"drop: set base_url: {base_url} there by hand", source=source)
    return start, end


def current_profile(existing: str | None, source: str) -> object | None:
    """The `vllm:` profile in the profiles file's text (None: no file, or no such profile)."""
    if existing is None or not existing.strip():
        return None
    data, _ = _profiles_node(existing, source)
    return data.get(PROFILE_KEY)


def placed_profile(existing: str | None, entry: dict, source: str, *, replace: bool = False) -> str:
    """The profiles file with ENTRY as its `vllm:` profile. Only the `vllm:` block's text changes (the rest of
    the file, comments and all, stays byte for byte; a CRLF file gets CRLF lines): a new block is appended,
    an existing one replaced, its own other keys kept (REPLACE: not kept). ConfigError, naming SOURCE, where
    that cannot be done without loss."""
    if existing is None or not existing.strip():
        return profile_yaml(entry)
    newline = "\r\n" if "\r\n" in existing else "\n"
    data, node = _profiles_node(existing, source)
    old = data.get(PROFILE_KEY)
    merged = {**old, **entry} if isinstance(old, dict) and not replace else entry
    block = profile_yaml(merged).replace("\n", newline)
    base_url = entry.get("base_url", "...")
    span = _profile_span(existing, node, base_url, source)
    if span is None:
        text = (existing if existing.endswith("\n") else existing + newline) + block
    else:
        start, end = span
        text = existing[:start] + (block if existing[start:end].endswith("\n") else block.rstrip("\r\n")) + \
            existing[end:]
    _check_reads_back(text, {**data, PROFILE_KEY: merged}, base_url, source)
    return text


def removed_profile(existing: str, source: str) -> str:
    """The profiles file without its `vllm:` block (the rest byte for byte)."""
    data, node = _profiles_node(existing, source)
    span = _profile_span(existing, node, "...", source)
    if span is None:
        return existing
    text = existing[:span[0]] + existing[span[1]:]
    _check_reads_back(text, {k: v for k, v in data.items() if k != PROFILE_KEY}, "...", source)
    return text


def _check_reads_back(text: str, expected: dict, base_url: str, source: str) -> None:
    try:
        placed, _, _ = compose_yaml(text, source, what="a profiles file", hint="write the entries out")
    except ConfigError:
        placed = None
    if (placed or {}) != expected:  # e.g. a `...` end marker: the block would land outside
        raise ConfigError(f"cannot place a {PROFILE_KEY}: entry in it without changing the rest: set "
                          f"base_url: {base_url} there by hand", source=source)


def _real_target(path: str) -> Path:
    """The file to write: PATH with its symlinks followed (a link into a dotfiles repo stays a link), in a
    directory that exists and is writable."""
    try:
        target = Path(os.path.realpath(Path(path).expanduser()))
        if target.is_symlink():
            raise ConfigError("is a symlink loop", source=path)
        if target.is_dir():
            raise ConfigError("is a directory; give the profiles.yaml file", source=path)
        if not target.parent.is_dir():
            raise ConfigError(f"directory {str(target.parent)!r} does not exist", source=path)
        if not os.access(target.parent, os.W_OK | os.X_OK):
            raise ConfigError(f"directory {str(target.parent)!r} is not writable", source=path)
    except OSError as exc:
        raise ConfigError(f"cannot use it: {exc.strerror or exc}", source=path) from None
    return target


def _read_existing(target: Path, source: str) -> str | None:
    from vllm_launcher.base.files import read_user_file

    try:
        if not os.path.lexists(target):
            return None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", source=source) from None
    return read_user_file(target, max_bytes=MAX_PROFILES_BYTES, what="cannot read client config")


def prepare_profile(path: str, entry: dict) -> ProfileWrite:
    """`--client-config PATH`, read and checked now, before anything starts: a file we could not rewrite
    stops the command with nothing started and nothing written."""
    target = _real_target(path)
    original = _read_existing(target, path)
    return ProfileWrite(path, target, original, placed_profile(original, entry, path), entry)


def write_profile(plan: ProfileWrite) -> None:
    """Write the prepared file atomically (placed again if the file changed since it was read), keeping an
    existing file's permissions and owner (as root on a user's file: still theirs; a new one gets the
    umask's mode), and say so on stderr."""
    from vllm_launcher.base import output
    from vllm_launcher.base.safe_text import printable
    from vllm_launcher.clients.writing import read_state, write_keeping

    current = dataclasses.replace(read_state(plan.target), shown=plan.source)
    unchanged = current.text == plan.original
    text = plan.text if unchanged else placed_profile(current.text, plan.entry, plan.source)
    write_keeping(current, text, backup=False)
    output.err(f"vllm-launch: wrote the client's profile (vllm: {plan.entry['base_url']}) to "
               f"{printable(str(plan.target))}")
