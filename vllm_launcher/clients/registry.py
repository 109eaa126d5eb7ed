"""Every client `vllm-launch launch` knows: one line each. A new client is one module and one line here."""

from __future__ import annotations

from vllm_launcher.base.errors import ConfigError
from vllm_launcher.clients import agent, aider, claude, codex, opencode
from vllm_launcher.clients.base import Client

CLIENTS: tuple[Client, ...] = (claude.CLIENT, codex.CLIENT, opencode.CLIENT, aider.CLIENT, agent.CLIENT)


def lookup(name: str) -> Client:
    """The client called NAME (or one of its aliases); ConfigError listing them otherwise."""
    wanted = name.strip().lower()
    for client in CLIENTS:
        if wanted == client.name or wanted in client.aliases:
            return client
    raise ConfigError(f"no client {name!r}: use one of " + ", ".join(c.name for c in CLIENTS), field="CLIENT")
