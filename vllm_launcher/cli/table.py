"""The command table (pip's lazy `commands_dict`): name -> where its body lives, its help, its parameters.

Only the chosen command's body module is imported. The typer app (cli.app) registers every row the same
way; a well-formed invocation of any of them is parsed by the stdlib fast path (cli.fastpath) instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vllm_launcher.cli.bench_options import BENCH_HELP, BENCH_PARAMS, TUNE_HELP, TUNE_PARAMS
from vllm_launcher.cli.options import (
    ENTRYPOINT,
    EXPORTS,
    FORMAT,
    GATEWAY_PARAMS,
    HARDWARE,
    JSON,
    LAUNCH_PARAMS,
    MACHINE,
    OUTPUT,
    OVERRIDES,
    PRESET,
    UP_PARAMS,
    VLLM_VERSION,
    Param,
    argument,
    flag,
)


@dataclass(frozen=True)
class Command:
    name: str
    body: str  # "module:function" under vllm_launcher.commands
    help: str
    params: tuple[Param, ...]

    def load(self) -> Callable[..., Any]:
        module, function = self.body.split(":")
        return getattr(importlib.import_module(f"vllm_launcher.commands.{module}"), function)


COMMANDS: tuple[Command, ...] = (
    Command("presets", "presets:presets", "List the presets: built-in, and your own from "
            "$XDG_CONFIG_HOME/vllm-launch/presets.", (JSON,)),
    Command("show", "presets:show", "Print the resolved preset as YAML (after `extends` and overrides).",
            (PRESET, *OVERRIDES)),
    Command("render", "presets:render", "Print the exact vLLM command for a preset, or its deployment files "
            "(flag order: see README).",
            (PRESET, FORMAT, ENTRYPOINT, OUTPUT, VLLM_VERSION, *EXPORTS, *OVERRIDES)),
    Command("probe", "fit:probe", "Show this machine: GPUs, RAM, cores, NUMA nodes and the installed vLLM "
            "(save with --json > FILE).", (JSON,)),
    Command("estimate", "fit:estimate", "Memory estimate before launch: weights, KV cache, tokens, and "
            "whether it fits (exit 1 if not).",
            (argument("preset", "[PRESET]", "Preset name or path (or none, with --model).", required=False),
             JSON, *MACHINE, *OVERRIDES)),
    Command("fit", "fit:fit", "Propose a working preset for MODEL on this (or a hypothetical) machine; print "
            "it as YAML.",
            (argument("model", "MODEL", "HF model id or local model directory."),
             Param("context", ("--context",), int, "Context length to fit (default: the largest that fits)."),
             Param("concurrency", ("--concurrency",), int, "Requests of that length at once.", default=1),
             Param("save", ("--save",), str, "Save as a user preset NAME.", metavar="NAME"),
             flag("force", ("--force",), "With --save: replace an existing preset."),
             Param("quantization", ("--quantization",), str, "Quantize online at load (e.g. fp8)."),
             Param("kv_cache_dtype", ("--kv-cache-dtype",), str, "KV cache dtype (e.g. fp8)."),
             Param("others", ("--model",), str, "Also try this checkpoint (e.g. a quantized one) when MODEL "
                   "does not fit; repeatable.", many=True),
             JSON, *MACHINE)),
    Command("recipes", "recipes:recipes", "vLLM's model recipes (a vllm-project/recipes checkout): list "
            "them, or turn one into a checked preset for this machine.",
            (argument("model", "[MODEL]", "The model whose recipe to turn into a preset (none: list them).",
                      required=False),
             Param("directory", ("--dir",), str, "Recipes directory (default: $VLLM_LAUNCH_RECIPES).",
                   metavar="DIR"),
             Param("variant", ("--variant",), str, "A variant by name (default: the one this machine's GPU "
                   "memory holds)."),
             Param("feature", ("--feature",), str, "Only these features (repeatable; default: all but the "
                   "opt-in ones).", many=True),
             Param("save", ("--save",), str, "Save as a user preset NAME.", metavar="NAME"),
             flag("force", ("--force",), "With --save: replace an existing preset."),
             flag("trust_recipe", ("--trust-recipe",), "Accept a recipe that sets what loads or runs other "
                  "code (LD_PRELOAD, PATH, PYTHONPATH, --trust-remote-code, ...)."), JSON, *MACHINE)),
    Command("up", "servers:up", "Start a vLLM server from a preset, show it becoming ready, keep it alive "
            "(Ctrl-C stops it).", UP_PARAMS),
    Command("status", "servers:status", "Show the servers: state, endpoint, pid, uptime, restarts, memory, "
            "requests and KV-cache usage.",
            (argument("name", "[NAME]", "One server (default: all).", required=False), JSON,
             flag("watch", ("--watch", "-w"), "Refresh every 2 s until Ctrl-C."))),
    Command("logs", "servers:logs", "Print a server's vLLM log.",
            (argument("name", "NAME", "Server name."),
             flag("follow", ("--follow", "-f"), "Keep printing new lines until Ctrl-C."),
             Param("lines", ("-n", "--lines"), int, "Lines to show first (0 or more).", default=50,
                   metavar="N"))),
    Command("down", "servers:down", "Stop a server and its whole process tree; confirm nothing is left and "
            "the port is free.",
            (argument("name", "[NAME]", "Server name.", required=False),
             flag("all_servers", ("--all",), "Stop every server."),
             Param("timeout_s", ("--timeout",), float, "Seconds for a clean stop before SIGKILL.",
                   default=30.0, metavar="S"))),
    Command("gateway", "gateway:gateway", "One OpenAI endpoint for your presets: start a model's server on "
            "its first request, make room by the memory estimate, stop or sleep it when idle.",
            GATEWAY_PARAMS),
    Command("doctor", "doctor:doctor", "Check presets, the environment, a running server or a vLLM log; say "
            "how to fix each problem.",
            (argument("names", "[PRESET]...", "Presets (names or YAML paths); none: every preset plus the "
                      "environment.", required=False, many=True),
             HARDWARE,
             Param("endpoint", ("--endpoint",), str, "Live checks of a running server, e.g. http://127.0.0.1:8000."),
             Param("log_file", ("--log",), str, "Explain the known vLLM errors in a log file."),
             flag("tools", ("--tools",), "Tool-calling conformance of the running server: auto, required and "
                  "named, streamed and not, two tools, a tool result, the client's prompt length."),
             Param("client_prompt_tokens", ("--client-prompt-tokens",), int,
                   "With --tools: also call a tool behind a system prompt of this many tokens.", metavar="N"),
             flag("list_rules", ("--list",), "List the checks and their codes."), VLLM_VERSION, JSON,
             *OVERRIDES)),
    Command("bench", "bench:bench", BENCH_HELP, BENCH_PARAMS),
    Command("tune", "bench:tune", TUNE_HELP, TUNE_PARAMS),
    Command("launch", "launch:launch", "Start a coding agent (claude, codex, opencode, aider, agent) on your "
            "model: the gateway, checks, its config merged, then the client; `-- ARGS` go to the client.",
            LAUNCH_PARAMS),
)
BY_NAME: dict[str, Command] = {command.name: command for command in COMMANDS}
