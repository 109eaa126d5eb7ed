"""opencode: chat completions through the `@ai-sdk/openai-compatible` provider, added as provider
`vllm-launch` to ~/.config/opencode/opencode.json (the key by `{env:...}` reference, never its value); the
launched process picks it as its model through OPENCODE_CONFIG_CONTENT, so the user's default is untouched."""

from __future__ import annotations

import json
import os
from pathlib import Path

from vllm_launcher.clients.base import KEY_VAR, PROVIDER, Client, ClientPlan, Target, home, key_env
from vllm_launcher.clients.edits import JsonEntries

OUTPUT_TOKENS = 4096


def config_path() -> Path:
    configured = os.environ.get("XDG_CONFIG_HOME")
    return (Path(configured) if configured else home() / ".config") / "opencode" / "opencode.json"


def plan(target: Target) -> ClientPlan:
    result = ClientPlan(env={"OPENCODE_CONFIG_CONTENT": json.dumps({"model": f"{PROVIDER}/{target.model}"})})
    key_env(target, result, KEY_VAR)
    model: dict[str, object] = {"name": target.model, "tool_call": True}
    if target.context_tokens:
        model["limit"] = {"context": target.context_tokens,
                          "output": min(OUTPUT_TOKENS, max(1, target.context_tokens // 4))}
    provider = {"npm": "@ai-sdk/openai-compatible", "name": PROVIDER,
                "options": {"baseURL": target.base_url, "apiKey": f"{{env:{KEY_VAR}}}"},
                "models": {target.model: model}}
    result.edits.append(JsonEntries(config_path(), {("provider", PROVIDER): provider},
                                    "a provider in opencode's config"))
    return result


CLIENT = Client(
    name="opencode", aliases=("opencode-ai",), title="opencode",
    description="opencode (chat completions)", binary="opencode",
    install="npm install -g opencode-ai", min_context=65536, prompt_tokens=10000, plan=plan)
