"""Claude Code: Anthropic's Messages API (`POST /v1/messages?beta=true`), pointed by environment only, plus
CLAUDE_CODE_ATTRIBUTION_HEADER=0 in ~/.claude/settings.json (a header that changes with every request
defeats vLLM's prefix caching)."""

from __future__ import annotations

import os
from pathlib import Path

from vllm_launcher.clients.base import Client, ClientPlan, Target, home, key_env
from vllm_launcher.clients.edits import JsonEntries


def settings_path() -> Path:
    configured = os.environ.get("CLAUDE_CONFIG_DIR")
    return (Path(configured) if configured else home() / ".claude") / "settings.json"


def plan(target: Target) -> ClientPlan:
    # ANTHROPIC_BASE_URL is the root: Claude Code adds /v1/messages itself.
    result = ClientPlan(env={"ANTHROPIC_BASE_URL": target.root_url, "ANTHROPIC_API_KEY": "",
                             "ANTHROPIC_MODEL": target.model,
                             "ANTHROPIC_DEFAULT_OPUS_MODEL": target.model,
                             "ANTHROPIC_DEFAULT_SONNET_MODEL": target.model,
                             "ANTHROPIC_DEFAULT_HAIKU_MODEL": target.model,
                             "CLAUDE_CODE_SUBAGENT_MODEL": target.model,
                             "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"})
    key_env(target, result, "ANTHROPIC_AUTH_TOKEN")  # sent as a Bearer token
    if target.context_tokens:
        result.env["CLAUDE_CODE_AUTO_COMPACT_WINDOW"] = str(target.context_tokens)
    result.edits.append(JsonEntries(settings_path(), {("env", "CLAUDE_CODE_ATTRIBUTION_HEADER"): "0"},
                                    "an env entry in Claude Code's settings"))
    return result


CLIENT = Client(
    name="claude", aliases=("claude-code",), title="Claude Code",
    description="Claude Code (Anthropic Messages API)",
    binary="claude", install="npm install -g @anthropic-ai/claude-code", min_context=65536,
    prompt_tokens=16000, plan=plan, protocol="messages")
