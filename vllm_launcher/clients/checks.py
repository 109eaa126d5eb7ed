"""Can this model serve this client? The checks that need no server (pure): its context length against the
client's minimum and its own prompt, tool calling on with a parser that matches the model's family, a
model name the client can send. Each problem says what to change. The live check (tool calls at the
client's prompt size) is doctor --tools (doctor.tools.run_checks), run by `launch` itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from vllm_launcher.clients.base import Client, Target

if TYPE_CHECKING:
    from vllm_launcher.preset.schema import Preset


@dataclass(frozen=True)
class Verdict:
    ok: bool
    text: str  # what was checked and found, and the fix when not ok


def _context(client: Client, target: Target, preset_name: str | None) -> Verdict:
    context = target.context_tokens
    where = f"preset {preset_name}" if preset_name else "the server"
    if context is None:
        return Verdict(True, f"context length unknown ({where} sets no max_model_len and the model's config "
                       f"is not here); {client.title} needs {client.min_context} tokens or more")
    if context < client.min_context:
        fix = (f"set max_model_len: {client.min_context} in {where} (--max-model-len {client.min_context}; "
               f"`vllm-launch fit MODEL --context {client.min_context}` says whether it fits)" if preset_name
               else f"serve it with --max-model-len {client.min_context} or more")
        return Verdict(False, f"context {context} tokens is below {client.title}'s minimum of "
                       f"{client.min_context}: {fix}")
    return Verdict(True, f"context {context} tokens (>= {client.min_context} for {client.title})")


def _tools(client: Client, preset: Preset | None) -> Verdict | None:
    if not client.uses_tools or preset is None:
        return None
    from vllm_launcher.preset.tool_parsers import lookup

    tools, model = preset.tool_calling, preset.model
    row = lookup(model)
    guess = (row.parser, row.family) if row and row.parser else None
    want = guess[0] if guess else (tools.parser or "hermes")
    if not tools.enabled or not tools.parser:
        return Verdict(False, f"tool calling is off in preset {preset.name}: {client.title} calls tools; set "
                       f"tool_calling: {{enabled: true, parser: {want}}} (--set tool_calling.enabled=true "
                       f"--set tool_calling.parser={want})")
    if guess and tools.parser != guess[0]:
        return Verdict(False, f"tool_calling.parser {tools.parser!r} does not match {model} ({guess[1]} "
                       f"models use {guess[0]!r}): tool calls would come back as text; set "
                       f"tool_calling.parser: {guess[0]}")
    matches = f" (matches {guess[1]})" if guess else " (model family unknown: doctor --tools checks it)"
    return Verdict(True, f"tool calling on, parser {tools.parser}{matches}")


def _name(client: Client, target: Target) -> Verdict | None:
    if client.protocol == "messages" and "/" in target.model:
        return Verdict(False, f"model name {target.model!r} has a '/', which Claude Code cannot use: set "
                       "served_model_name (or an alias) without one")
    return None


def static_checks(client: Client, target: Target, preset: Preset | None = None) -> list[Verdict]:
    """Every check that needs no server, in order; ok=False ones are what to change."""
    name = preset.name if preset is not None else None
    found = [_context(client, target, name), _tools(client, preset), _name(client, target)]
    return [verdict for verdict in found if verdict is not None]
