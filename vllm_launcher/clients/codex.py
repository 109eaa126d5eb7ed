"""Codex CLI: the Responses API (`wire_api = "responses"`, the only one Codex accepts now). A provider
table in ~/.codex/config.toml and a profile in its own file, ~/.codex/vllm-launch.config.toml (Codex 0.171
refuses a `[profiles.P]` table in config.toml as a "legacy profile"), so the user's default stays theirs;
the client runs with `--profile vllm-launch`."""

from __future__ import annotations

import os
from pathlib import Path

from vllm_launcher.clients.base import KEY_VAR, PROVIDER, Client, ClientPlan, Target, home, key_env
from vllm_launcher.clients.edits import OwnFile, TomlBlock
from vllm_launcher.clients.toml_text import toml_table


def codex_home() -> Path:
    configured = os.environ.get("CODEX_HOME")
    return Path(configured) if configured else home() / ".codex"


def plan(target: Target) -> ClientPlan:
    result = ClientPlan(argv=["--profile", PROVIDER])
    key_env(target, result, KEY_VAR)
    result.edits.append(TomlBlock(codex_home() / "config.toml", ("model_providers", PROVIDER),
                                  {"name": PROVIDER, "base_url": target.base_url, "env_key": KEY_VAR,
                                   "wire_api": "responses"}, "a model provider in Codex's config"))
    profile: dict[str, object] = {"model": target.model, "model_provider": PROVIDER}
    if target.context_tokens:
        profile["model_context_window"] = target.context_tokens
    result.edits.append(OwnFile(codex_home() / f"{PROVIDER}.config.toml", toml_table((), profile),
                                "Codex's vllm-launch profile"))
    return result


CLIENT = Client(
    name="codex", aliases=("codex-cli",), title="Codex CLI", description="OpenAI Codex CLI (Responses API)",
    binary="codex", install="npm install -g @openai/codex", min_context=32768, prompt_tokens=8000,
    plan=plan, protocol="responses")
