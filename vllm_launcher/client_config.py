"""The client's side of a server: the guide's agent profile (the `vllm:` entry of its profiles.yaml) and the
OpenAI SDK environment.

Rendering is pure and goes through the YAML dumper. `write_profile` sets the `vllm:` entry of the user's
profiles file and keeps every other key; it refuses, before anything starts, a file it could not rewrite
without loss (not a YAML mapping, or with comments, which a YAML rewrite drops), and writes atomically.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from vllm_launcher.errors import ConfigError

CPU_TIMEOUT_S = 300  # the guide's value: a CPU answers slowly
GPU_TIMEOUT_S = 120
MAX_PROFILES_BYTES = 1 << 20
PROFILE_KEY = "vllm"


def profile_entry(base_url: str, device: str) -> dict:
    """The guide's `vllm:` profile for a server at BASE_URL (the OpenAI base, .../v1)."""
    return {"base_url": base_url, "timeout": CPU_TIMEOUT_S if device == "cpu" else GPU_TIMEOUT_S}


def profile_yaml(entry: dict) -> str:
    """The entry as profiles.yaml text (`vllm:` and its keys), through the YAML dumper."""
    return yaml.safe_dump({PROFILE_KEY: entry}, sort_keys=False, default_flow_style=False)


def sdk_env_lines(base_url: str, key_env: str | None) -> list[str]:
    """The OpenAI SDK's environment for this server (openai, LangChain, LiteLLM and most agents read it):
    the key by reference to the user's variable, never its value."""
    key = f'"${key_env}"' if key_env else "EMPTY  # any value: this server checks no key"
    return [f"  export OPENAI_BASE_URL={shlex.quote(base_url)}", f"  export OPENAI_API_KEY={key}"]


def merged_profiles(existing: str | None, entry: dict, source: str) -> str:
    """The profiles file with its `vllm:` entry set to ENTRY and every other key kept (EXISTING: its text,
    None when there is no file yet). ConfigError, naming SOURCE, for text a rewrite would damage."""
    if existing is None or not existing.strip():
        return profile_yaml(entry)
    if "#" in existing:
        raise ConfigError("it has comments (or a '#'), which rewriting it would drop: add this entry by "
                          "hand instead:\n" + profile_yaml(entry).rstrip(), source=source)
    try:
        data = yaml.safe_load(existing)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}",
                          source=source) from None
    if not isinstance(data, dict):
        raise ConfigError(f"expected a YAML mapping of profiles, found {type(data).__name__}", source=source)
    return yaml.safe_dump({**data, PROFILE_KEY: entry}, sort_keys=False, default_flow_style=False)


def prepare_profile(path: str, entry: dict) -> tuple[Path, str]:
    """(where, what) to write for `--client-config PATH`: read and checked now, before any start, so a bad
    file stops the command with nothing started and nothing written."""
    from vllm_launcher.files import read_user_file

    target = Path(path).expanduser()
    if target.is_dir():
        raise ConfigError("is a directory; give the profiles.yaml file", source=path)
    if not target.parent.is_dir():
        raise ConfigError(f"directory {str(target.parent)!r} does not exist", source=path)
    existing = (read_user_file(target, max_bytes=MAX_PROFILES_BYTES, what="cannot read client config")
                if target.exists() else None)
    return target, merged_profiles(existing, entry, path)


def write_profile(target: Path, text: str) -> None:
    """Write the prepared profiles file atomically, keeping an existing file's permissions."""
    from vllm_launcher import atomic

    mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
    try:
        atomic.write_text(target, text, mode=mode)
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror or exc}", source=str(target)) from None
