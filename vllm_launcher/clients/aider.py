"""aider: chat completions through LiteLLM's `openai/` provider (OPENAI_API_BASE, OPENAI_API_KEY), the
model's context in ~/.aider.model.metadata.json (else aider warns it knows nothing of the model)."""

from __future__ import annotations

from vllm_launcher.clients.base import Client, ClientPlan, Target, home, key_env
from vllm_launcher.clients.edits import JsonEntries

OUTPUT_TOKENS = 4096


def plan(target: Target) -> ClientPlan:
    name = f"openai/{target.model}"
    metadata = home() / ".aider.model.metadata.json"
    result = ClientPlan(env={"OPENAI_API_BASE": target.base_url},
                        argv=["--model", name, "--model-metadata-file", str(metadata)])
    key_env(target, result, "OPENAI_API_KEY")
    entry: dict[str, object] = {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 0.0,
                                "output_cost_per_token": 0.0, "supports_function_calling": True}
    if target.context_tokens:
        output = min(OUTPUT_TOKENS, max(1, target.context_tokens // 4))
        entry.update(max_tokens=output, max_input_tokens=target.context_tokens, max_output_tokens=output)
    result.edits.append(JsonEntries(metadata, {(name,): entry}, "aider's model metadata"))
    return result


CLIENT = Client(
    name="aider", aliases=("aider-chat",), title="aider", description="aider (chat completions via LiteLLM)",
    binary="aider", install="python -m pip install aider-chat (or: pipx install aider-chat)",
    min_context=8192, prompt_tokens=2000, plan=plan, uses_tools=False)
