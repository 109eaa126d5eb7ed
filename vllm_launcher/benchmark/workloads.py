"""What the load generator sends: `random` (independent prompts of a given length), `prefix` (one shared
prefix, a random suffix each), `agent` (S conversations of T turns over one shared system prompt and a
tools array, each turn appending the answer, as a tool call, and a tool result) or a JSONL FILE of requests
or conversations.

A workload is a list of sessions; a session's requests run one after another (the agent's turns), the
sessions side by side. Prompt lengths are counted with the model's tokenizer when one is found (the
`tokenizers` library on tokenizer.json, never transformers), else one word per token; the server's own
count (usage.prompt_tokens) replaces ours in the figures, as in vLLM's client.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vllm_launcher.base.errors import ConfigError

BUILTIN = ("random", "agent", "prefix")
DEFAULT_CLIENT_PROMPT_TOKENS = 6500  # the guide's coding agent: system prompt and tool schemas
MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_FILE_LINES = 1_000_000
WORDS = (  # noqa: SIM905 - one word per token, as a paragraph reads better than a list
    "the file function value return list error test code line change build module class type name "
    "call data path read write check open close start stop run time space point case part place "
    "number word system program question work state group fact hand night week point home water "
    "room mother area money story month right study book eye job business issue side kind head "
    "house service friend father power hour game level office door health person art war history "
    "party result morning reason research girl guy moment air teacher force education"
).split()

AGENT_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {arg: {"type": "string", "description": arg_doc}},
                "required": [arg],
            },
        },
    }
    for name, description, arg, arg_doc in (
        ("read_file", "Read a file of the repository and return its text.", "path", "Path of the file."),
        (
            "run_shell",
            "Run a shell command in the repository and return its output.",
            "command",
            "The command line.",
        ),
        ("edit_file", "Replace a span of a file with new text.", "patch", "A unified diff."),
        ("search_code", "Search the repository for a regular expression.", "pattern", "The expression."),
    )
]


class Tokens:
    """Counts and makes text of a number of tokens: the model's tokenizer.json when given, else words."""

    def __init__(self, tokenizer_file: Path | None = None) -> None:
        self.tokenizer: Any = None
        self.source = "words (no tokenizer found: one word per token)"
        if tokenizer_file is not None:
            try:
                from tokenizers import Tokenizer

                self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
                self.source = str(tokenizer_file)
            except ImportError:
                pass
            except Exception as exc:
                self.source = f"words ({tokenizer_file} could not be read: {str(exc)[:100]})"

    def count(self, text: str) -> int:
        if self.tokenizer is None:
            return len(text.split())
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def text(self, tokens: int, rng: random.Random) -> str:
        """Random words making about TOKENS tokens (exactly, with a tokenizer, as far as decoding allows)."""
        if tokens <= 0:
            return ""
        words = [rng.choice(WORDS) for _ in range(tokens)]
        if self.tokenizer is None:
            return " ".join(words)
        ids = self.tokenizer.encode(" ".join(words), add_special_tokens=False).ids
        while len(ids) < tokens:  # a word is at least one token, so this rarely runs
            words += [rng.choice(WORDS) for _ in range(tokens - len(ids))]
            ids = self.tokenizer.encode(" ".join(words), add_special_tokens=False).ids
        return str(self.tokenizer.decode(ids[:tokens]))


@dataclass
class Session:
    """Requests that run one after another. `messages`: the first request's messages; an agent session
    (`tool_results` given) then appends, per turn, the answer (as a tool call) and the next tool result."""

    index: int
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    tool_results: list[str] = field(default_factory=list)
    output_tokens: int | None = None
    prompt_tokens: int = 0  # our count of the first request's prompt

    @property
    def turns(self) -> int:
        return 1 + len(self.tool_results)


@dataclass
class Workload:
    name: str
    sessions: list[Session]
    description: str
    tokens_source: str
    longest_tokens: int  # the longest request's prompt plus output, by our count (tune's KV bound)

    @property
    def requests(self) -> int:
        return sum(s.turns for s in self.sessions)


@dataclass(frozen=True)
class Shape:
    """The sizes a built-in workload is made from (tokens)."""

    requests: int = 32
    input_tokens: int = 256
    output_tokens: int = 64
    sessions: int = 4
    turns: int = 4
    client_prompt_tokens: int = DEFAULT_CLIENT_PROMPT_TOKENS
    tool_result_tokens: int = 256
    user_tokens: int = 64
    prefix_tokens: int | None = None  # prefix workload: shared part (default 3/4 of input_tokens)


def build(name: str, shape: Shape, tokens: Tokens, seed: int) -> Workload:
    """The workload NAME (random, prefix, agent, or a JSONL file path) of SHAPE. Raises ConfigError."""
    rng = random.Random(seed)
    if name == "random":
        return _random(shape, tokens, rng)
    if name == "prefix":
        return _prefix(shape, tokens, rng)
    if name == "agent":
        return _agent(shape, tokens, rng)
    return from_file(Path(name), shape, tokens)


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def _random(shape: Shape, tokens: Tokens, rng: random.Random) -> Workload:
    sessions = [
        Session(
            i,
            _user(tokens.text(shape.input_tokens, rng)),
            output_tokens=shape.output_tokens,
            prompt_tokens=shape.input_tokens,
        )
        for i in range(shape.requests)
    ]
    return Workload(
        "random",
        sessions,
        f"{shape.requests} requests of {shape.input_tokens} tokens in, {shape.output_tokens} out",
        tokens.source,
        shape.input_tokens + shape.output_tokens,
    )


def _prefix(shape: Shape, tokens: Tokens, rng: random.Random) -> Workload:
    prefix_len = shape.prefix_tokens if shape.prefix_tokens is not None else shape.input_tokens * 3 // 4
    if prefix_len > shape.input_tokens:
        raise ConfigError(
            f"the shared prefix ({prefix_len}) is longer than --input-tokens ({shape.input_tokens})",
            source="--prefix-tokens",
        )
    prefix = tokens.text(prefix_len, rng)
    sessions = [
        Session(
            i,
            _user(prefix + " " + tokens.text(shape.input_tokens - prefix_len, rng)),
            output_tokens=shape.output_tokens,
            prompt_tokens=shape.input_tokens,
        )
        for i in range(shape.requests)
    ]
    return Workload(
        "prefix",
        sessions,
        f"{shape.requests} requests of {shape.input_tokens} tokens in "
        f"({prefix_len} shared), {shape.output_tokens} out",
        tokens.source,
        shape.input_tokens + shape.output_tokens,
    )


def _agent(shape: Shape, tokens: Tokens, rng: random.Random) -> Workload:
    tools_tokens = tokens.count(json.dumps(AGENT_TOOLS))
    system_tokens = max(shape.client_prompt_tokens - tools_tokens, 16)
    system = (
        "You are a coding agent working in a repository. Use the tools to read, search, run and edit. "
        + tokens.text(system_tokens, rng)
    )
    sessions = []
    for i in range(shape.sessions):
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": tokens.text(shape.user_tokens, rng)},
        ]
        results = [tokens.text(shape.tool_result_tokens, rng) for _ in range(shape.turns - 1)]
        sessions.append(
            Session(
                i,
                messages,
                tools=AGENT_TOOLS,
                tool_results=results,
                output_tokens=shape.output_tokens,
                prompt_tokens=system_tokens + tools_tokens + shape.user_tokens,
            )
        )
    # Each later turn adds an answer and a tool result (plus the template's few tokens per message).
    longest = (
        system_tokens
        + tools_tokens
        + shape.user_tokens
        + (shape.turns - 1) * (shape.output_tokens + shape.tool_result_tokens + 32)
        + shape.output_tokens
    )
    return Workload(
        "agent",
        sessions,
        f"{shape.sessions} sessions x {shape.turns} turns over a "
        f"{shape.client_prompt_tokens}-token system prompt and {len(AGENT_TOOLS)} tools, "
        f"{shape.tool_result_tokens}-token tool results, {shape.output_tokens} tokens out per turn",
        tokens.source,
        longest,
    )


# ------------------------------------------------------------------------------------------ files


def _file_error(path: Path, line: int, message: str, field_name: str | None = None) -> ConfigError:
    return ConfigError(message, source=path, line=line, field=field_name)


def _string(value: Any, path: Path, line: int, name: str) -> str:
    if not isinstance(value, str):
        raise _file_error(path, line, f"expected a string, got {type(value).__name__}", name)
    return value


def _messages(value: Any, path: Path, line: int) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise _file_error(path, line, "expected a non-empty list of {role, content} objects", "messages")
    for i, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in (
            "system",
            "user",
            "assistant",
            "tool",
        ):
            raise _file_error(
                path, line, "each message needs a role of system, user, assistant or tool", f"messages[{i}]"
            )
    return value


def _session_from(data: Any, index: int, shape: Shape, tokens: Tokens, path: Path, line: int) -> Session:
    if not isinstance(data, dict):
        raise _file_error(path, line, "expected a JSON object with prompt, messages or conversation")
    output = data.get("output_tokens", data.get("max_tokens", shape.output_tokens))
    if not isinstance(output, int) or isinstance(output, bool) or output < 1:
        raise _file_error(
            path, line, f"expected a whole number of tokens, 1 or more, not {output!r}", "output_tokens"
        )
    tools = data.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _file_error(path, line, "expected a list of OpenAI tool objects", "tools")
    system = data.get("system")
    head = (
        [{"role": "system", "content": _string(system, path, line, "system")}] if system is not None else []
    )
    if "messages" in data:
        messages = _messages(data["messages"], path, line)
        results: list[str] = []
    elif "prompt" in data:
        messages = [*head, {"role": "user", "content": _string(data["prompt"], path, line, "prompt")}]
        results = []
    elif "conversation" in data:
        turns = data["conversation"]
        if not isinstance(turns, list) or not turns:
            raise _file_error(
                path,
                line,
                "expected a non-empty list: the user's message, then the tool results of the later turns",
                "conversation",
            )
        texts = [_string(t, path, line, f"conversation[{i}]") for i, t in enumerate(turns)]
        messages = [*head, {"role": "user", "content": texts[0]}]
        results = texts[1:]
        tools = tools or AGENT_TOOLS
    else:
        raise _file_error(path, line, "expected one of the fields prompt, messages or conversation")
    counted = sum(tokens.count(str(m.get("content") or "")) for m in messages)
    return Session(
        index, messages, tools=tools, tool_results=results, output_tokens=output, prompt_tokens=counted
    )


def from_file(path: Path, shape: Shape, tokens: Tokens) -> Workload:
    """A JSONL workload: one request (`prompt` or `messages`) or conversation (`conversation`: the user's
    message then one tool result per later turn; `system`, `tools` optional) per line."""
    if path.suffix not in (".jsonl", ".json") and not path.exists():
        raise ConfigError(
            f"unknown workload {str(path)!r}: use {', '.join(BUILTIN)} or a JSONL file", source="--workload"
        )
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB", source=path)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such workload file", source=path) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a JSONL file", source=path) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", source=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read it: {exc.strerror or exc}", source=path) from None
    sessions: list[Session] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if number > MAX_FILE_LINES:
            raise _file_error(path, number, f"more than {MAX_FILE_LINES} lines")
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise _file_error(path, number, f"not JSON: {exc}") from None
        sessions.append(_session_from(data, len(sessions), shape, tokens, path, number))
    if not sessions:
        raise ConfigError("no requests in the file (one JSON object per line)", source=path)
    longest = max(s.prompt_tokens + s.turns * (s.output_tokens or 0) for s in sessions)
    return Workload(str(path), sessions, f"{len(sessions)} sessions from {path.name}", tokens.source, longest)


def find_tokenizer(model: str | None, explicit: str | None = None) -> Path | None:
    """tokenizer.json of --tokenizer (a directory or the file), else of the model: a local directory, the
    demo model, or its Hugging Face cache snapshot. None when there is none."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        candidate = path / "tokenizer.json" if path.is_dir() else path
        if not candidate.is_file():
            raise ConfigError(f"no tokenizer.json at {explicit}", source="--tokenizer")
        return candidate
    if not model:
        return None
    from vllm_launcher import demo
    from vllm_launcher.memory.arch import find_in_hf_cache

    directories: list[Path] = []
    if demo.is_demo_model(model):
        directories.append(demo.demo_model_dir())
    local = Path(model).expanduser()
    if local.is_dir():
        directories.append(local)
    elif model.count("/") == 1:
        snapshot = find_in_hf_cache(model)
        if snapshot is not None:
            directories.append(snapshot)
    for directory in directories:
        if (directory / "tokenizer.json").is_file():
            return directory / "tokenizer.json"
    return None
