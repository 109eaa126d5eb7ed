"""Preset → LaunchPlan: the exact vLLM argv and env. Pure functions, no I/O.

Flag order is fixed so that rendered commands diff cleanly, and follows the seed guide's commands:

    --model, --served-model-name, --host, --port,
    --enable-auto-tool-choice, --tool-call-parser,
    --dtype, --enforce-eager, --max-model-len, --max-num-batched-tokens, --max-num-seqs,
    --enable-chunked-prefill / --no-enable-chunked-prefill,
    --gpu-memory-utilization, --tensor-parallel-size, --pipeline-parallel-size,
    --kv-cache-dtype, --enable-sleep-mode, --kv-cache-memory-bytes (GPU only), then `extra_args` as written.

Env: `VLLM_CPU_KVCACHE_SPACE` (CPU, from kv_cache_space_gib), `VLLM_SERVER_DEV_MODE=1` (sleep_when_idle),
then the preset's `env` in its order.
Secrets are never values in a plan: `secret_env` maps the variable vLLM reads (`VLLM_API_KEY`,
`HF_TOKEN`) to the name of the user's variable that holds it, resolved only when the process is spawned.
A name in the preset's `env` that looks like a secret (`OPENAI_API_KEY`, `*_TOKEN`, `*_PASSWORD`,
`*_SECRET`, ...: `looks_secret`) is one too: `NAME: ${VAR}` takes it from VAR, any other value from the
user's own NAME; the value written in the preset is never rendered (doctor VL129 says so).
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from vllm_launcher.base.units import GIB
from vllm_launcher.demo import DEMO_MODEL_ID

if TYPE_CHECKING:  # plans are also formatted from the plan cache, without loading pydantic
    from vllm_launcher.preset.schema import Preset

API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
Entrypoint = Literal["api_server", "serve"]


@dataclass(frozen=True)
class LaunchPlan:
    """What to run: argv, the env the preset sets (on top of the user's), and secrets by reference."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, str] = field(default_factory=dict)  # VLLM_API_KEY -> name of the user's var


def interpreter(preset: Preset) -> str:
    """The Python that has vLLM: the preset's `python`, else the one running us."""
    return preset.python or sys.executable


def model_path(preset: Preset) -> str:
    """What vLLM's --model gets: the preset's model, or the built demo model's directory."""
    if preset.model == DEMO_MODEL_ID:
        from vllm_launcher.demo import demo_model_dir

        return str(demo_model_dir())
    return preset.model


def plan_deps(preset: Preset) -> list[str]:
    """Files besides the preset's own that the plan depends on (for the plan cache)."""
    if preset.model == DEMO_MODEL_ID:
        from vllm_launcher.demo import BUILDER_PATH

        return [str(BUILDER_PATH)]
    return []


def served_model_name(preset: Preset) -> str:
    """The model name the server answers to (`/v1/models`, the requests' `model`)."""
    return preset.served_model_name or (DEMO_MODEL_ID if preset.model == DEMO_MODEL_ID else preset.model)


def vllm_flags(preset: Preset) -> list[str]:
    """The vLLM flags of a preset, without the model (which `vllm serve` takes as its argument)."""
    flags: list[str] = []

    def add(flag: str, value: object) -> None:
        if value is not None:
            flags.extend([flag, str(value)])

    add("--served-model-name", preset.served_model_name or (DEMO_MODEL_ID if preset.model == DEMO_MODEL_ID
                                                            else None))
    add("--host", preset.host)
    add("--port", preset.port)
    if preset.tool_calling.enabled:
        flags.append("--enable-auto-tool-choice")
        add("--tool-call-parser", preset.tool_calling.parser)
    add("--dtype", preset.dtype)
    if preset.enforce_eager:
        flags.append("--enforce-eager")
    add("--max-model-len", preset.max_model_len)
    add("--max-num-batched-tokens", preset.max_num_batched_tokens)
    add("--max-num-seqs", preset.max_num_seqs)
    if preset.enable_chunked_prefill is not None:
        flags.append("--enable-chunked-prefill" if preset.enable_chunked_prefill
                     else "--no-enable-chunked-prefill")
    add("--gpu-memory-utilization", preset.gpu_memory_utilization)
    add("--tensor-parallel-size", preset.tensor_parallel_size)
    add("--pipeline-parallel-size", preset.pipeline_parallel_size)
    add("--data-parallel-size", preset.data_parallel_size)
    add("--quantization", preset.quantization)
    add("--kv-cache-dtype", preset.kv_cache_dtype)
    if preset.sleep_when_idle:
        flags.append("--enable-sleep-mode")  # so that the gateway can put it to sleep when idle (CUDA only)
    if preset.device == "cuda" and preset.kv_cache_space_gib is not None:
        # On GPU a fixed KV size replaces the utilization-based sizing (vLLM's --kv-cache-memory-bytes).
        add("--kv-cache-memory-bytes", preset.kv_cache_space_gib * GIB)
    flags.extend(preset.extra_args)
    return flags


# A word of the name (between underscores) that says "secret"; TOKENS, TOKENIZERS, KEYS are other words.
SECRET_NAME_RE = re.compile(r"(?:^|_)(?:API_?KEY|TOKEN|PASSWORD|PASSWD|PASSPHRASE|SECRET|SECRET_KEY|"
                            r"PRIVATE_KEY|ACCESS_KEY|CREDENTIALS?)(?:_|$)", re.IGNORECASE)
SECRET_REFERENCE_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


NOT_SECRET_SUFFIXES = ("_PATH", "_FILE", "_DIR", "_URL")  # HF_TOKEN_PATH names where a token lies


def looks_secret(name: str) -> bool:
    """True when an environment variable NAME looks like it holds a secret (OPENAI_API_KEY, GH_TOKEN,
    DB_PASSWORD, AWS_SECRET_ACCESS_KEY, ...)."""
    return bool(SECRET_NAME_RE.search(name)) and not name.upper().endswith(NOT_SECRET_SUFFIXES)


def secret_source(name: str, value: str) -> str:
    """The user's variable a secret-looking env entry is taken from: VAR for `${VAR}` or `$VAR`, else the
    same NAME (the value written in the preset is never used)."""
    match = SECRET_REFERENCE_RE.fullmatch(value.strip())
    return (match.group(1) or match.group(2)) if match else name


def plan_env(preset: Preset) -> dict[str, str]:
    env: dict[str, str] = {}
    if preset.device == "cpu" and preset.kv_cache_space_gib is not None:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(preset.kv_cache_space_gib)
    if preset.sleep_when_idle:
        # vLLM serves /sleep, /wake_up and /is_sleeping only in dev mode; the doctor keeps such a server on
        # loopback (VL117): those endpoints take no API key.
        env["VLLM_SERVER_DEV_MODE"] = "1"
    env.update({name: value for name, value in preset.env.items() if not looks_secret(name)})
    return env


def plan_secret_env(preset: Preset) -> dict[str, str]:
    secrets: dict[str, str] = {}
    if preset.api_key_env and preset.api_key_env != "VLLM_API_KEY":
        secrets["VLLM_API_KEY"] = preset.api_key_env
    if preset.hf_token_env and preset.hf_token_env != "HF_TOKEN":
        secrets["HF_TOKEN"] = preset.hf_token_env
    for name, value in preset.env.items():
        if looks_secret(name):  # by reference, shown as ${SOURCE}: the server gets the user's value
            secrets[name] = secret_source(name, value)
    return secrets


def build_plan(preset: Preset, entrypoint: Entrypoint = "api_server") -> LaunchPlan:
    """Preset → LaunchPlan. `api_server`: `PYTHON -m vllm.entrypoints.openai.api_server --model M ...`;
    `serve`: `vllm serve M ...` (the same flags)."""
    if entrypoint == "serve":
        argv = ["vllm", "serve", model_path(preset), *vllm_flags(preset)]
    else:
        argv = [interpreter(preset), "-m", API_SERVER_MODULE, "--model", model_path(preset),
                *vllm_flags(preset)]
    return LaunchPlan(argv=argv, env=plan_env(preset), secret_env=plan_secret_env(preset))


# -------------------------------------------------------------------------------------- formatting


def _env_for_output(plan: LaunchPlan) -> dict[str, str]:
    # Secrets appear as a reference to the user's variable, never as a value.
    return {**plan.env, **{name: "${" + source + "}" for name, source in plan.secret_env.items()}}


def format_json(plan: LaunchPlan) -> str:
    """Exactly `{"argv": [...], "env": {...}}`."""
    return json.dumps({"argv": plan.argv, "env": _env_for_output(plan)}, indent=2)


def format_shell(plan: LaunchPlan) -> str:
    """A copy-pasteable command: env assignments, then one flag (with its value) per line."""
    env_words = [f"{name}={shlex.quote(value)}" for name, value in plan.env.items()]
    # "${VAR}" must stay expandable: double quotes, never single.
    env_words += [f'{name}="${{{source}}}"' for name, source in plan.secret_env.items()]
    argv = plan.argv
    head_len = 3 if len(argv) >= 3 and argv[1] in ("-m", "serve") else 1
    head = " ".join(env_words + [shlex.quote(word) for word in argv[:head_len]])
    lines = [head]
    index = head_len
    while index < len(argv):
        word = argv[index]
        if word.startswith("--") and index + 1 < len(argv) and not argv[index + 1].startswith("--"):
            lines.append(f"{shlex.quote(word)} {shlex.quote(argv[index + 1])}")
            index += 2
        else:
            lines.append(shlex.quote(word))
            index += 1
    return " \\\n    ".join(lines)
