"""The guide's agent (Victor): chat completions, its `vllm:` profile in ~/.victor/profiles.yaml (what
`--client-config` writes), run as `victor chat --provider vllm --model NAME`. Its system prompt is ~6.5K
tokens, so the guide asks for at least a 16K context."""

from __future__ import annotations

from vllm_launcher.clients.base import Client, ClientPlan, Target, home, key_env
from vllm_launcher.clients.edits import YamlProfile


def plan(target: Target) -> ClientPlan:
    from vllm_launcher.clients.agent_profile import gateway_entry

    entry = gateway_entry(target.base_url)  # the CPU timeout: a first request may wait for a cold start
    result = ClientPlan(argv=["chat", "--provider", "vllm", "--model", target.model])
    key_env(target, result, "OPENAI_API_KEY")
    result.edits.append(YamlProfile(home() / ".victor" / "profiles.yaml", entry,
                                    "the vllm: profile in the agent's profiles"))
    return result


CLIENT = Client(
    name="agent", aliases=("victor", "guide"), title="Victor",
    description="the guide's agent, Victor (chat completions)",
    binary="victor", install="python -m pip install victor-ai (Victor, the guide's agent)",
    min_context=16384, prompt_tokens=6500, plan=plan)
