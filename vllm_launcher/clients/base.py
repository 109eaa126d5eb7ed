"""What every client module provides (`Client`), what it is given (`Target`: the endpoint and the model it
will talk to) and what it returns (`ClientPlan`: its environment, its config entries, its arguments)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vllm_launcher.clients.edits import Edit

PROVIDER = "vllm-launch"  # our name in every client's config: a provider, a profile
KEY_VAR = "VLLM_LAUNCH_API_KEY"  # the variable our entries name for the key (set for the client's process)
NO_KEY = "vllm-launch"  # what the clients send when the server checks no key (they insist on one)


@dataclass(frozen=True)
class Target:
    """The server a client talks to: ROOT_URL (http://HOST:PORT, no /v1), the MODEL name to ask for, its
    context length (None: unknown), and the variable holding the key (None: no key checked)."""

    root_url: str
    model: str
    context_tokens: int | None = None
    key_env: str | None = None

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"


@dataclass
class ClientPlan:
    """ENV is set for the client's process only; SECRET_ENV maps a variable to the user's variable whose
    value it takes at exec (shown as $NAME, never its value); EDITS go into the client's files; ARGV follows
    the client's binary (the user's own arguments after `--` come after it)."""

    env: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, str] = field(default_factory=dict)
    edits: list[Edit] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Client:
    """One client: NAME and ALIASES on the command line, the BINARY that tells it is installed, how to
    INSTALL it, the context it needs (MIN_CONTEXT) and the size of its own prompt (PROMPT_TOKENS: the
    tool-calling check sends one that long), whether it makes tool calls, and PLAN: Target -> ClientPlan."""

    name: str
    aliases: tuple[str, ...]
    title: str
    description: str
    binary: str
    install: str
    min_context: int
    prompt_tokens: int
    plan: Callable[[Target], ClientPlan]
    protocol: str = "chat"  # what it calls: "messages" (Anthropic), "responses", "chat"
    uses_tools: bool = True


def home() -> Path:
    return Path(os.path.expanduser("~"))


def key_env(target: Target, plan: ClientPlan, *names: str) -> None:
    """Give the client its key in each of NAMES: the user's variable by reference when the server checks
    one, else a placeholder (the clients refuse to start without a key)."""
    for name in names:
        if target.key_env:
            plan.secret_env[name] = target.key_env
        else:
            plan.env[name] = NO_KEY
