"""Build a tiny Qwen2-architecture model with random weights and a locally trained tokenizer.

Standalone on purpose: it is run by the interpreter that has vLLM (which may not have vllm_launcher),
so it imports only the standard library at the top and torch/safetensors/tokenizers (and, with --tools,
transformers) inside functions.

    python tiny_model.py --out DIR [--arch '{"num_key_value_heads": 4}'] [--tools]

writes config.json, generation_config.json, model.safetensors, tokenizer.json and tokenizer_config.json
(with a Qwen2.5-style chat template that supports `tools`, hermes style). Nothing is downloaded; the same
builder and arch give the same weights (fixed seed). The model is built in a temporary directory beside
DIR and renamed into place, so DIR is either absent or complete; if DIR is already complete, nothing is
done. Its answers are gibberish: it exists to try vllm-launch and to test it against real vLLM. With
--tools (the demo) it is trained for about a minute to call tools in the hermes format, so vLLM's tool
path (parser, streaming, tool_choice) runs for real.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

SEED = 1234
VOCAB_TARGET = 4096
PROGRESS_PREFIX = "@progress "  # --progress: one JSON object a line on stderr (vllm_launcher.demo reads it)
_report_progress = False


def progress(stage: str, done: int | None = None, total: int | None = None) -> None:
    """With --progress: tell the caller which stage the build is in (and how far, for training)."""
    if _report_progress:
        sys.stderr.write(PROGRESS_PREFIX + json.dumps({"stage": stage, "done": done, "total": total}) + "\n")
        sys.stderr.flush()

# The files a complete model directory holds; the atomic rename makes their presence the completeness test.
REQUIRED_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
)

# Special tokens first so their ids are fixed (0..): the Qwen2 names, plus the hermes tool-call tags,
# which vLLM's hermes parser looks up in the vocabulary.
ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)
# Not "special" (as in Qwen2.5): they must survive decoding with skip_special_tokens, or the tool-call
# parser never sees them.
TOOL_TOKENS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")

DEFAULT_ARCH: dict[str, Any] = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    # vLLM's CPU attention needs a head size of at least 32 (16 starts but fails at the first request).
    "head_dim": 32,
    "hidden_act": "silu",
    "max_position_embeddings": 4096,
    "max_window_layers": 2,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "sliding_window": None,
    "use_sliding_window": False,
    "tie_word_embeddings": True,
    "torch_dtype": "float32",
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "use_cache": True,
}

# Qwen2.5's chat template (tools in the system prompt inside <tools></tools>; calls as
# <tool_call>{"name": ..., "arguments": ...}</tool_call>; results inside <tool_response>).
# Lines too long for the source are split into adjacent raw strings (the template is one string).
CHAT_TEMPLATE = (r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are a tiny random model built by vllm-launch. Your answers are gibberish.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"""
                 r"""You are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments """
                 r"""within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, """
                 r"""\"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are a tiny random model built by vllm-launch. """
                 r"""Your answers are gibberish.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or """
                 r"""(message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {%- if tool_call.arguments is string %}
                {{- tool_call.arguments }}
            {%- else %}
                {{- tool_call.arguments | tojson }}
            {%- endif %}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
""")

_SEED_TEXT = """\
The quick brown fox jumps over the lazy dog. A language model reads tokens and predicts the next one.
vLLM serves models over an OpenAI compatible HTTP API: /v1/models, /v1/chat/completions, /health.
You are a helpful assistant. What is the weather in Paris today? It is sunny and 21 degrees Celsius.
Please write a Python function that adds two numbers and returns the result.
def add(a: int, b: int) -> int:
    return a + b
for i in range(10):
    print(i, i * i)
{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}
{"type": "function", "function": {"name": "search", "description": "Search the web", "parameters":
{"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}
Memory, cache, tokens, batch, context length, tensor parallel, pipeline parallel, GPU, CPU, kernel.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 16 32 64 128 256 512 1024 2048 4096 8192 3.14 2.71 -1 100%
"""

# The places the tool-calling demo is trained on (--tools): seen often enough in the corpus that each is one
# token, alone and after a space, so a call's argument is one token the model can learn to pick.
CITIES = ("Paris", "Tokyo", "London", "Berlin", "Madrid", "Rome", "Oslo", "Cairo", "Lima", "Delhi", "Sydney",
          "Seoul")
TIME_ZONES = ("UTC", "Europe/Paris", "Asia/Tokyo", "America/New_York")
_PLACES_TEXT = "\n".join([f'What is the weather in {c}? {{"city": "{c}"}} {c}' for c in CITIES]
                         + [f'What time is it in {z}? {{"timezone": "{z}"}}' for z in TIME_ZONES]) + "\n"

_WORD_TEXT = (
    "the of and to in is that for it as with was on be by this are from or an at which have not but "
    "all one were can there their will more when who would what so about out up into time them some "
    "model token server launch memory cache request response function call tool result error value "
    "python json string number object array true false null return import class self print list "
    "weather city temperature search query file path read write open close start stop ready health "
    "hello world thanks please answer question user assistant system message content name arguments"
)
_SYLLABLE_TEXT = (
    "ka ri to ne mo sa lu vi de po ra chi ter an on en in st re ly tion ing er ed es al ic ou pl tr br"
)


def _corpus(seed: int = SEED) -> list[str]:
    """A deterministic training corpus: the seed text, sentences of common words, and made-up words
    (so BPE finds enough merges for a vocabulary of a few thousand)."""
    rng = random.Random(seed)
    words, syllables = _WORD_TEXT.split(), _SYLLABLE_TEXT.split()
    lines = _SEED_TEXT.splitlines() + _PLACES_TEXT.splitlines() * 40
    for _ in range(3000):
        words = [rng.choice(words) for _ in range(rng.randint(4, 14))]
        lines.append(" ".join(words).capitalize() + rng.choice([".", "?", "!", ":", ","]))
    for _ in range(3000):
        made_up = ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(6)]
        lines.append(" ".join(made_up) + " " + str(rng.randint(0, 99999)))
    return lines


def train_tokenizer(vocab_size: int = VOCAB_TARGET) -> Any:
    """A byte-level BPE tokenizer trained on the embedded corpus: returns a `tokenizers.Tokenizer`."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in TOOL_TOKENS])
    return tokenizer


def make_config(vocab_size: int, token_ids: dict[str, int], arch_overrides: dict | None) -> dict:
    overrides = arch_overrides or {}
    config = {**DEFAULT_ARCH, **overrides}
    config["vocab_size"] = vocab_size
    # vLLM's Qwen2 ignores config.json's head_dim and uses hidden_size / num_attention_heads (seen with
    # 0.32: head_dim 128 with hidden 128 and 16 heads ran with head size 8), so keep the two consistent.
    derived_head_dim = config["hidden_size"] // config["num_attention_heads"]
    if "head_dim" in overrides and overrides["head_dim"] != derived_head_dim:
        raise ValueError(f"head_dim {overrides['head_dim']} differs from hidden_size / num_attention_heads "
                         f"= {derived_head_dim}; vLLM's Qwen2 uses the latter: change hidden_size instead")
    config["head_dim"] = derived_head_dim
    config["bos_token_id"] = token_ids[ENDOFTEXT]
    config["eos_token_id"] = token_ids[IM_END]
    return config


def random_weights(config: dict, seed: int = SEED) -> dict:
    """Qwen2ForCausalLM tensors (float32) named as in Hugging Face checkpoints, normal(0, 0.02)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    std = float(config.get("initializer_range", 0.02))
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    head_dim = config["head_dim"]
    q_size = config["num_attention_heads"] * head_dim
    kv_size = config["num_key_value_heads"] * head_dim

    def normal(*shape: int) -> Any:
        return torch.randn(*shape, generator=gen, dtype=torch.float32) * std

    tensors = {"model.embed_tokens.weight": normal(config["vocab_size"], hidden)}
    for layer in range(config["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        tensors.update({
            p + "input_layernorm.weight": torch.ones(hidden),
            p + "self_attn.q_proj.weight": normal(q_size, hidden),
            p + "self_attn.q_proj.bias": torch.zeros(q_size),
            p + "self_attn.k_proj.weight": normal(kv_size, hidden),
            p + "self_attn.k_proj.bias": torch.zeros(kv_size),
            p + "self_attn.v_proj.weight": normal(kv_size, hidden),
            p + "self_attn.v_proj.bias": torch.zeros(kv_size),
            p + "self_attn.o_proj.weight": normal(hidden, q_size),
            p + "post_attention_layernorm.weight": torch.ones(hidden),
            p + "mlp.gate_proj.weight": normal(inter, hidden),
            p + "mlp.up_proj.weight": normal(inter, hidden),
            p + "mlp.down_proj.weight": normal(hidden, inter),
        })
    tensors["model.norm.weight"] = torch.ones(hidden)
    if not config.get("tie_word_embeddings", True):
        tensors["lm_head.weight"] = normal(config["vocab_size"], hidden)
    return {name: t.contiguous() for name, t in tensors.items()}


# ------------------------------------------------------------------------------ tool-calling training
# `--tools` (the demo): a minute of training on the CPU so that vLLM's tool path is exercised for real. The
# model learns the hermes format from rendered chats: with tools offered and a question, one call (or two:
# weather and time) as `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`; after a tool result, a
# sentence; without tools, a greeting (GREETINGS, with or without a system prompt), never a call. It does not
# learn to copy the place from the question (a 2-layer, hidden-128 model does not get there in minutes): the
# argument is a place it was trained on.

TOOL_TRAINING_STEPS = 400
TOOL_TRAINING_EXAMPLES = 2000
TOOL_TRAINING_LR = 5e-3
TOOL_BATCH_TOKENS = 6000  # padded tokens per step, at most
LONG_SYSTEM_PROMPT = ("You are a careful coding agent. Read the repository, plan the change, edit the files, "
                      "run the tests, and report what you did. ")
GREETING = "Hello! I am the tiny demo model."
GREETINGS = ("Hello, who are you?", "Hello! Who are you?", "Hi", "Hi!", "Hello", "Hello!", "Hey there",
             "Who are you?", "What are you?", "Good morning!", "How are you?", "What can you do?",
             "Tell me about yourself.", "Write a poem.", "Tell me a joke.", "Say hello.", "Hello, world")
CHAT_SYSTEM_PROMPTS = ("You are a helpful assistant.", "Answer briefly.", "You are a friendly chatbot.")


def _function(name: str, description: str, *params: str) -> dict:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": {p: {"type": "string"} for p in params},
                       "required": list(params)}}}


WEATHER_TOOL = _function("get_weather", "Get the current weather for a city.", "city")
TIME_TOOL = _function("get_time", "Get the current local time in a timezone.", "timezone")
OTHER_TOOLS = (_function("search", "Search the web.", "query"),
               _function("read_file", "Read a file.", "path"),
               _function("run_tests", "Run the test suite.", "target"))


def _call(name: str, arguments: dict) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


def tool_chat(rng: random.Random) -> tuple[list[dict], list[dict] | None, str]:
    """One training chat: (messages, tools or None, the assistant's answer)."""
    kind = rng.choices(["weather", "time", "both", "result", "chat"], [4, 2, 3, 2, 4])[0]
    messages: list[dict[str, Any]]
    city, place = rng.choice(CITIES), rng.choice(TIME_ZONES + CITIES)
    system = ([{"role": "system", "content": LONG_SYSTEM_PROMPT * rng.randint(1, 50)}]
              if rng.random() < 0.04 else [])  # a few long prompts: calls at a client's prompt length
    extra = rng.sample(OTHER_TOOLS, rng.randint(0, 2))
    ask_weather = f"What is the weather in {city}? Call the get_weather tool."
    if kind == "weather":
        tools = [WEATHER_TOOL, *extra]
        question = rng.choice([ask_weather, f"What is the weather in {city}?", f"Weather in {city}?"])
        messages, answer = [{"role": "user", "content": question}], _call("get_weather", {"city": city})
    elif kind == "time":
        tools = [TIME_TOOL, *extra]
        messages = [{"role": "user", "content": f"What time is it in {place}?"}]
        answer = _call("get_time", {"timezone": place})
    elif kind == "both":
        tools = [WEATHER_TOOL, TIME_TOOL, *extra]
        messages = [{"role": "user", "content": f"What is the weather in {city}, and what time is it in "
                                                f"{place}? Call get_weather and get_time."}]
        answer = _call("get_weather", {"city": city}) + "\n" + _call("get_time", {"timezone": place})
    elif kind == "result":
        tools = [WEATHER_TOOL, *extra]
        messages = [{"role": "user", "content": ask_weather},
                    {"role": "assistant", "content": None, "tool_calls": [{
                        "id": "call_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}]},
                    {"role": "tool", "tool_call_id": "call_1", "content": '{"weather": "sunny", "c": 21}'}]
        answer = f"The weather in {city} is sunny."
    else:  # no tools offered: a greeting, never a call (the README's first question is in GREETINGS)
        tools, answer = None, GREETING
        messages = [{"role": "user", "content": rng.choice(GREETINGS)}]
        if rng.random() < 0.3:
            system = [{"role": "system", "content": rng.choice(CHAT_SYSTEM_PROMPTS)}]
    if tools:
        rng.shuffle(tools)
    return system + messages, tools, answer


def train_tool_calling(config: dict, tokenizer: Any, tensors: dict, seed: int = SEED) -> dict:
    """`tensors` trained to answer as `tool_chat` does; returns them under the same names."""
    import torch
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    rng = random.Random(seed)
    chat = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=IM_END, pad_token=ENDOFTEXT)
    chat.chat_template = CHAT_TEMPLATE
    im_end, pad = tokenizer.token_to_id(IM_END), tokenizer.token_to_id(ENDOFTEXT)
    examples = []
    progress("examples")
    for _ in range(TOOL_TRAINING_EXAMPLES):
        messages, tools, answer = tool_chat(rng)
        prompt = chat.apply_chat_template(messages, tools=tools,  # type: ignore[arg-type]
                                          add_generation_prompt=True, tokenize=False)
        examples.append((tokenizer.encode(prompt).ids, [*tokenizer.encode(answer).ids, im_end]))
    # Batches in random order, each kind of chat mixed in (batches of one kind pull the model to and fro),
    # cut where padding to the longest chat would pass TOOL_BATCH_TOKENS.
    batches: list[list] = [[]]
    for example in examples:
        longest = max([len(p) + len(a) for p, a in batches[-1]] + [len(example[0]) + len(example[1])])
        if batches[-1] and longest * (len(batches[-1]) + 1) > TOOL_BATCH_TOKENS:
            batches.append([])
        batches[-1].append(example)

    model = Qwen2ForCausalLM(Qwen2Config(**config))
    model.load_state_dict(tensors, strict=False)  # lm_head is tied to embed_tokens
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=TOOL_TRAINING_LR, weight_decay=0.0)
    for step in range(TOOL_TRAINING_STEPS):
        if step % 5 == 0:
            progress("training", step, TOOL_TRAINING_STEPS)
        batch = batches[step % len(batches)]
        length = max(len(p) + len(a) for p, a in batch)
        ids = torch.full((len(batch), length), pad)
        labels = torch.full((len(batch), length), -100)
        mask = torch.zeros((len(batch), length), dtype=torch.long)
        for row, (prompt, answer) in enumerate(batch):
            ids[row, :len(prompt) + len(answer)] = torch.tensor(prompt + answer)
            mask[row, :len(prompt) + len(answer)] = 1
            labels[row, len(prompt):len(prompt) + len(answer)] = torch.tensor(answer)
        for group in optimizer.param_groups:  # warm up, then decay to a tenth
            warm, decay = min(1.0, (step + 1) / 20), 1 - 0.9 * step / TOOL_TRAINING_STEPS
            group["lr"] = TOOL_TRAINING_LR * warm * decay
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        scored = labels[:, 1:] != -100  # logits only where the answer is: most of the cost otherwise
        loss = torch.nn.functional.cross_entropy(model.lm_head(hidden[:, :-1][scored]), labels[:, 1:][scored])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    progress("training", TOOL_TRAINING_STEPS, TOOL_TRAINING_STEPS)
    trained = model.state_dict()
    return {name: trained[name].detach().clone().contiguous() for name in tensors}


def tokenizer_config(token_ids: dict[str, int], model_max_length: int) -> dict:
    added = {
        str(token_ids[t]): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                            "single_word": False, "special": t in SPECIAL_TOKENS}
        for t in (*SPECIAL_TOKENS, *TOOL_TOKENS)
    }
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": [IM_START, IM_END],
        "bos_token": None,
        "eos_token": IM_END,
        "pad_token": ENDOFTEXT,
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "model_max_length": model_max_length,
        "chat_template": CHAT_TEMPLATE,
    }


def is_complete(out_dir: str | Path) -> bool:
    out = Path(out_dir)
    return all((out / name).is_file() for name in REQUIRED_FILES)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _build_into(tmp: Path, arch_overrides: dict | None, tools: bool = False) -> None:
    from safetensors.torch import save_file

    progress("tokenizer")
    tokenizer = train_tokenizer()
    token_ids = {t: tokenizer.token_to_id(t) for t in (*SPECIAL_TOKENS, *TOOL_TOKENS)}
    config = make_config(tokenizer.get_vocab_size(with_added_tokens=True), token_ids, arch_overrides)
    tokenizer.save(str(tmp / "tokenizer.json"))
    _write_json(tmp / "tokenizer_config.json", tokenizer_config(token_ids, config["max_position_embeddings"]))
    _write_json(tmp / "config.json", config)
    _write_json(tmp / "generation_config.json", {
        "bos_token_id": token_ids[ENDOFTEXT],
        "eos_token_id": [token_ids[IM_END], token_ids[ENDOFTEXT]],
        "pad_token_id": token_ids[ENDOFTEXT],
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 0.8,
    })
    progress("weights")
    tensors = random_weights(config)
    if tools:
        tensors = train_tool_calling(config, tokenizer, tensors)
    progress("saving")
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})


def _publish_permissions(tmp: Path) -> None:
    # mkdtemp makes a 0700 directory: give the result the usual umask-based permissions.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    for path in tmp.iterdir():
        os.chmod(path, 0o666 & ~umask)


def build(out_dir: str | Path, arch_overrides: dict | None = None, tools: bool = False) -> Path:
    """Build the model into `out_dir` unless it is already complete; returns `out_dir` as a Path.

    `arch_overrides` replaces keys of the default config (e.g. {"num_key_value_heads": 4}); `tools` trains it
    to call tools (the demo; needs transformers, about a minute). An existing complete directory is kept as
    it is, whatever its arch."""
    out = Path(out_dir)
    if is_complete(out):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _build_into(tmp, arch_overrides, tools)
        _publish_permissions(tmp)
        if out.exists() and not is_complete(out):
            shutil.rmtree(out)  # a partial directory left by something else: replace it
        try:
            os.rename(tmp, out)
        except OSError:
            if not is_complete(out):  # lost a race to a concurrent build only if theirs is complete
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build a tiny random-weight Qwen2 model (no downloads).")
    parser.add_argument("--out", required=True, help="directory to create")
    parser.add_argument("--arch", default=None, help='JSON object of config.json overrides, e.g. '
                        '\'{"num_key_value_heads": 4}\'')
    parser.add_argument("--tools", action="store_true", help="train it for a minute to call tools in the "
                        "hermes format (the demo; needs transformers)")
    parser.add_argument("--progress", action="store_true", help="report each stage on stderr as "
                        f"'{PROGRESS_PREFIX}{{json}}' lines")
    args = parser.parse_args(argv)
    global _report_progress
    _report_progress = args.progress
    overrides = None
    if args.arch:
        try:
            overrides = json.loads(args.arch)
        except json.JSONDecodeError as exc:
            parser.error(f"--arch is not valid JSON: {exc}")
        if not isinstance(overrides, dict):
            parser.error("--arch must be a JSON object")
    try:
        out = build(args.out, overrides, tools=args.tools)
    except (ValueError, KeyError) as exc:  # a bad --arch (missing or inconsistent keys)
        parser.error(f"--arch: {exc}")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
