"""`fit`: propose a working preset for a model on a machine (this one, a saved probe, or a hypothetical one).

Pure given the architecture and the hardware: the largest context that fits `concurrency` requests at once
(or the given context), the smallest TP size that divides the heads and fits, the KV space (CPU) or
utilization (GPU), and the tool parser of the model's family.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from vllm_launcher.base.errors import ConfigError, LaunchError
from vllm_launcher.base.inputs import PRESET_NAME, check_name
from vllm_launcher.machine.hardware import GIB, Hardware
from vllm_launcher.memory import kvcache
from vllm_launcher.memory.arch import ModelArch, load_arch
from vllm_launcher.memory.estimate import (
    CPU_BLOCK_SIZE,
    CPU_MLA_BLOCK_SIZE,
    CPU_RUNTIME_GIB,
    Estimate,
    cpu_mla_backend,
    default_utilization,
    estimate,
    kv_bytes_per_token,
    resolve_model_dtype,
    weights_bytes,
)
from vllm_launcher.preset.schema import Preset, ToolCalling
from vllm_launcher.preset.tool_parsers import parser_for


def tool_parser_for(model: str, arch: ModelArch | None = None) -> str | None:
    """The vLLM tool-call parser for a model family (preset.tool_parsers, shared with doctor)."""
    return parser_for(model, arch)


def check_preset_name(name: str, field: str = "--save") -> str:
    """`name` if it can name a preset (and a file in the presets directory), else ConfigError."""
    return check_name(name, PRESET_NAME, field)


def _slug(model: str) -> str:
    """The model's last path part as the tail of a preset name (`fit-<slug>`: at most 64 characters)."""
    name = model.rstrip("/").rsplit("/", 1)[-1].lower()
    name = re.sub(r"\.{2,}", ".", re.sub(r"[^a-z0-9._-]+", "-", name))
    name = name.removesuffix(".yaml").removesuffix(".yml")
    return name[: PRESET_NAME.max_length - len("fit-")].strip("-._") or "model"


def _base_preset(model: str, arch: ModelArch, device: Literal["cuda", "cpu"], name: str | None,
                 quantization: str | None = None, kv_cache_dtype: Any = None) -> Preset:
    parser = tool_parser_for(model, arch)
    extra = ["--tokenizer-mode=mistral"] if parser == "mistral" else []
    return Preset(name=name or f"fit-{_slug(model)}", model=model, device=device,
                  tool_calling=ToolCalling(enabled=parser is not None, parser=parser), extra_args=extra,
                  quantization=quantization, kv_cache_dtype=kv_cache_dtype)


def _round_context(tokens: int) -> int:
    """Round a context down to a multiple of 1024 when large (to 16 when small): tidy and block-aligned."""
    return tokens // 1024 * 1024 if tokens >= 4096 else max(16, tokens // 16 * 16)


def fit(model: str, hw: Hardware, context: int | None = None, concurrency: int = 1,
        device: str | None = None, *, arch: ModelArch | None = None, name: str | None = None,
        quantization: str | None = None, kv_cache_dtype: str | None = None) -> Preset:
    """A preset for `model` on `hw` holding `concurrency` requests of `context` tokens (the largest that
    fits when None), with QUANTIZATION (online, e.g. fp8) and KV_CACHE_DTYPE when given. Raises LaunchError
    when nothing fits, with the reason (fit_proposals.proposals says what would)."""
    if name is not None:
        check_preset_name(name)
    arch = arch or load_arch(model)
    device = device or ("cuda" if hw.gpus else "cpu")
    if device not in ("cuda", "cpu"):
        raise ConfigError(f"must be cuda or cpu, not {device!r}", source="--device")
    concurrency = max(1, concurrency)
    if context is not None and context > arch.max_position_embeddings:
        raise ConfigError(f"{context} is above {model}'s limit (max_position_embeddings="
                          f"{arch.max_position_embeddings} tokens); use --context <= "
                          f"{arch.max_position_embeddings} (longer needs a RoPE-scaled model and "
                          "VLLM_ALLOW_LONG_MAX_MODEL_LEN=1)", field="--context")
    base = _base_preset(model, arch, "cuda" if device == "cuda" else "cpu", name, quantization,
                        kv_cache_dtype)
    if device == "cpu":
        return _fit_cpu(base, arch, hw, context, concurrency)
    return _fit_gpu(base, arch, hw, context, concurrency)


GPUS_PER_NODE = 8  # tensor parallel stays within a node (NVLink); more GPUs are pipeline stages


def _layouts(arch: ModelArch, gpus: int) -> list[tuple[int, int]]:
    """(TP, PP) to try on GPUS, smallest first: TP dividing the heads within a node, then TP 8 x PP."""
    tps = [t for t in (1, 2, 4, 8) if t <= min(gpus, GPUS_PER_NODE) and arch.num_attention_heads % t == 0]
    widest = max(tps, default=1)
    stages = [p for p in (2, 4, 8, 16) if widest * p <= gpus and p <= arch.num_layers]
    return [(t, 1) for t in tps] + [(widest, p) for p in stages]


def _fit_gpu(base: Preset, arch: ModelArch, hw: Hardware, context: int | None, concurrency: int) -> Preset:
    """The smallest TP (dividing the heads, at most the GPUs here) whose KV holds `concurrency` requests of
    the target context (the given one, else the model's whole context). Only when no TP reaches it is the
    context shrunk (no --context) to the most the best TP holds, or the fit refused (--context given)."""
    if not hw.gpus:
        raise LaunchError("no GPU on this machine; use --device cpu, or describe a GPU machine with "
                          "--gpus N --gpu-mem-gib X (or --hardware FILE)")
    target = context or arch.max_position_embeddings
    best: tuple[int, Preset] | None = None  # (context it holds, preset at that TP) over all TPs tried
    last = None
    utilization = default_utilization(hw)
    for tp, pp in _layouts(arch, len(hw.gpus)):
        trial = base.model_copy(update={"tensor_parallel_size": tp if tp > 1 else None,
                                        "pipeline_parallel_size": pp if pp > 1 else None,
                                        "gpu_memory_utilization": utilization,
                                        "max_model_len": target})
        est = last = estimate(trial, arch, hw)
        if est.num_blocks <= 1 or (est.reasons and est.kv_cache_gib <= 0):
            continue
        # vLLM keeps one block back; each request of L tokens takes ceil(L / block) blocks.
        holds = min(arch.max_position_embeddings, (est.num_blocks - 1) // concurrency * est.block_size)
        if holds >= target:
            return trial.model_copy(update={"description": _describe(est, hw, concurrency, target)})
        if best is None or holds > best[0]:
            best = (holds, trial)
    floor = min(4096, arch.max_position_embeddings)
    if context is None and best is not None and best[0] >= floor:
        final_len = _round_context(best[0])
        final = best[1].model_copy(update={"max_model_len": final_len})
        return final.model_copy(update={"description": _describe(estimate(final, arch, hw), hw, concurrency,
                                                                 final_len)})
    detail = f" ({'; '.join(last.reasons)})" if last and last.reasons and best is None else ""
    most = (f"; at most {concurrency} x {best[0]} tokens (TP {best[1].tensor_parallel_size or 1}"
            f"{f' x PP {best[1].pipeline_parallel_size}' if best[1].pipeline_parallel_size else ''})"
            if best is not None and best[0] > 0 else "")
    want = f"{concurrency} x {context} tokens" if context else f"{concurrency} request(s) of {floor} tokens"
    raise LaunchError(f"{base.model} does not fit {want} on {len(hw.gpus)} x "
                      f"{hw.gpus[0].total_bytes / GIB:.1f} GiB GPU(s){most}{detail}")


def _fit_cpu(base: Preset, arch: ModelArch, hw: Hardware, context: int | None, concurrency: int) -> Preset:
    amx_mla = cpu_mla_backend(base, arch, hw) == kvcache.AMX_MLA
    block = CPU_MLA_BLOCK_SIZE if arch.is_mla and not amx_mla else CPU_BLOCK_SIZE
    node = hw.numa_nodes[0] if hw.numa_nodes else None
    node_free = node.free_bytes if node and node.free_bytes is not None else hw.ram_available_bytes
    runtime = int(CPU_RUNTIME_GIB * GIB)
    # The guide runs CPU models in float32 (safe everywhere); fall back to bfloat16 when RAM is short. An MLA
    # model on an AMX CPU runs vLLM's AMX_MLA backend, which cannot pack float32 weights: bfloat16 only.
    for dtype in ("bfloat16",) if amx_mla else ("float32", "bfloat16"):
        weights = weights_bytes(arch, resolve_model_dtype(dtype, arch))
        per_token = kv_bytes_per_token(arch, 1, None, dtype)
        # Leave a GiB of headroom in both RAM and NUMA node 0 (vLLM checks the KV space against it).
        budget = min(hw.ram_available_bytes - weights - runtime, node_free) - GIB
        kv_gib = int(budget // GIB)
        if kv_gib < 1:
            continue
        if context is not None:
            need = (concurrency * math.ceil(context / block) + 1) * block * per_token
            kv_gib_needed = max(1, math.ceil(need / GIB))
            if kv_gib_needed > kv_gib:
                continue
            kv_gib, best = kv_gib_needed, context
        else:
            blocks = kv_gib * GIB // (block * per_token)
            best = min(arch.max_position_embeddings, (blocks - 1) // concurrency * block)
            if best < min(2048, arch.max_position_embeddings):
                continue
            best = best if best == arch.max_position_embeddings else _round_context(best)
            # Only as much KV space as the context needs: the rest of the RAM stays free.
            kv_gib = max(1, math.ceil((concurrency * math.ceil(best / block) + 1) * block * per_token / GIB))
        preset = base.model_copy(update={"dtype": dtype, "enforce_eager": True, "max_model_len": best,
                                         "kv_cache_space_gib": kv_gib})
        est = estimate(preset, arch, hw)
        if est.fits:
            return preset.model_copy(update={"description": _describe(est, hw, concurrency, best)})
    raise LaunchError(f"{base.model} does not fit in this machine's RAM "
                      f"({hw.ram_available_bytes / GIB:.1f} GiB available, NUMA node 0 "
                      f"{node_free / GIB:.1f} GiB) with {concurrency} request(s) of {context or 2048} tokens")


def _describe(est, hw: Hardware, concurrency: int, context: int) -> str:
    if est.device == "cuda":
        used = est.tensor_parallel_size * est.pipeline_parallel_size
        layout = f"TP {est.tensor_parallel_size}" + (f" x PP {est.pipeline_parallel_size}"
                                                     if est.pipeline_parallel_size > 1 else "")
        where = (f"{len(hw.gpus)} x {hw.gpus[0].total_bytes / GIB:.1f} GiB GPU available, "
                 f"{layout} ({used} GPU{'s' if used > 1 else ''} used)")
    else:
        where = f"CPU, {est.ram_available_gib} GiB RAM available"
    return (f"Proposed by `vllm-launch fit` for {where}: {concurrency} request(s) of {context} tokens; "
            f"estimate {est.kv_cache_tokens} KV tokens ({est.max_concurrency}x), "
            f"weights {est.weights_gib} GiB.")


# --------------------------------------------------------------------------- when nothing fits


@dataclass(frozen=True)
class Proposal:
    """A launch near the one asked for that fits: what changes, the preset, its estimate, the command."""

    change: str
    preset: Preset
    estimate: Estimate
    command: list[str]
    note: str = ""


@dataclass(frozen=True)
class Ask:
    """What `fit` was asked (to try variations of it): the model, the context and concurrency, the
    machine as given on the command line (MACHINE_ARGS), and other checkpoints the user named."""

    model: str
    context: int | None = None
    concurrency: int = 1
    device: str | None = None
    machine_args: tuple[str, ...] = ()
    others: tuple[str, ...] = ()
    quantization: str | None = None
    kv_cache_dtype: str | None = None


def _with_gpus(hw: Hardware, count: int) -> Hardware:
    """HW with COUNT GPUs like its first one (all free)."""
    first = hw.gpus[0]
    gpus = [first.model_copy(update={"index": i, "free_bytes": first.total_bytes}) for i in range(count)]
    return hw.model_copy(update={"gpus": gpus})


def _command(ask: Ask, *, model: str | None = None, machine: tuple[str, ...] | None = None,
             context: int | None = None, quantization: str | None = None,
             kv_cache_dtype: str | None = None) -> list[str]:
    argv = ["vllm-launch", "fit", model or ask.model]
    if context or ask.context:
        argv += ["--context", str(context or ask.context)]
    if ask.concurrency > 1:
        argv += ["--concurrency", str(ask.concurrency)]
    if quantization or ask.quantization:
        argv += ["--quantization", quantization or ask.quantization or ""]
    if kv_cache_dtype or ask.kv_cache_dtype:
        argv += ["--kv-cache-dtype", kv_cache_dtype or ask.kv_cache_dtype or ""]
    return argv + list(ask.machine_args if machine is None else machine)


def _fp8_note(hw: Hardware) -> str | None:
    """Whether online fp8 runs on these GPUs (None: it does not): native from compute capability 8.9 (Ada,
    Hopper), weight-only through Marlin kernels from 8.0 (Ampere)."""
    capability = hw.gpus[0].compute_capability if hw.gpus else None
    if capability is None:
        return ("needs compute capability 8.9+ (Ada, Hopper, Blackwell), or 8.0+ (Ampere) as weight-only "
                "Marlin")
    if tuple(capability) >= (8, 9):
        return ""
    if tuple(capability) >= (8, 0):
        return "weight-only (Marlin) on this Ampere GPU: memory halves, no fp8 speed-up"
    return None


def _try(ask: Ask, hw: Hardware, change: str, command: list[str], note: str = "", *, model: str | None = None,
         context: int | None = None, quantization: str | None = None,
         kv_cache_dtype: str | None = None) -> Proposal | None:
    try:
        preset = fit(model or ask.model, hw, context=context or ask.context, concurrency=ask.concurrency,
                     device=ask.device, quantization=quantization or ask.quantization,
                     kv_cache_dtype=kv_cache_dtype or ask.kv_cache_dtype)
    except (LaunchError, ConfigError):
        return None
    return Proposal(change, preset, estimate(preset, load_arch(preset.model), hw), command, note)


def proposals(ask: Ask, hw: Hardware) -> list[Proposal]:
    """The nearest launches that fit when ASK does not, nearest first: online fp8 (where the GPU runs it),
    an fp8 KV cache, the largest context, published quantized checkpoints of the model (catalog, the
    variants of its vLLM recipe) and the ones the user named, then more of the same GPU (TP within a
    node, then PP). Each is a real `fit` run, with its estimate and the command that gives it."""
    from vllm_launcher.memory.catalog import quantized_checkpoints

    arch = load_arch(ask.model)
    found: list[Proposal | None] = []
    gpu = (ask.device or ("cuda" if hw.gpus else "cpu")) == "cuda" and bool(hw.gpus)
    fp8 = _fp8_note(hw) if gpu else None
    if fp8 is not None and arch.quant is None and ask.quantization is None:
        found.append(_try(ask, hw, "online fp8 quantization (quantization: fp8)",
                          _command(ask, quantization="fp8"), fp8, quantization="fp8"))
    if ask.kv_cache_dtype is None and gpu:
        found.append(_try(ask, hw, "fp8 KV cache (kv_cache_dtype: fp8)", _command(ask, kv_cache_dtype="fp8"),
                          "half the KV bytes per token; quality close to bf16", kv_cache_dtype="fp8"))
    found.append(_largest_context(ask, hw, arch))
    others = dict.fromkeys([*quantized_checkpoints(ask.model), *recipe_checkpoints(ask.model),
                            *ask.others])
    for other in others:
        found.append(_try(ask, hw, f"the quantized checkpoint {other}", _command(ask, model=other),
                          "a separate download", model=other))
    if gpu:
        found.append(_more_gpus(ask, hw, arch))
    return [p for p in found if p is not None]


def recipe_checkpoints(model: str) -> list[str]:
    """The other checkpoints (an FP8 or AWQ repo) that variants of MODEL's vLLM recipe serve, when a recipes
    checkout is set in $VLLM_LAUNCH_RECIPES (none without one, or without a recipe for MODEL)."""
    import os
    from pathlib import Path

    from vllm_launcher.preset.recipes import RECIPES_ENV, recipe_for

    directory = os.environ.get(RECIPES_ENV)
    if not directory:
        return []
    try:
        recipe = recipe_for(model, Path(directory).expanduser())
    except (LaunchError, OSError):
        return []
    return [v.model_id for v in recipe.variants if v.model_id and v.model_id.lower() != model.lower()]


def _largest_context(ask: Ask, hw: Hardware, arch: ModelArch) -> Proposal | None:
    """The longest context that fits as asked otherwise (none when even 512 tokens do not)."""
    candidates: list[int | None] = [None] if ask.context else []
    candidates += [c for c in (32768, 16384, 8192, 4096, 2048, 1024, 512)
                   if c < (ask.context or min(4096, arch.max_position_embeddings) + 1)]
    for context in candidates:
        try:
            preset = fit(ask.model, hw, context=context, concurrency=ask.concurrency, device=ask.device,
                         quantization=ask.quantization, kv_cache_dtype=ask.kv_cache_dtype)
        except (LaunchError, ConfigError):
            continue
        length = preset.max_model_len or context or 0
        if ask.context and length >= ask.context:
            return None
        argv = _command(Ask(**{**ask.__dict__, "context": None}), context=length)
        return Proposal(f"a shorter context ({length} tokens)", preset, estimate(preset, arch, hw), argv)
    return None


def _more_gpus(ask: Ask, hw: Hardware, arch: ModelArch) -> Proposal | None:
    """The fewest GPUs like these that fit: TP within a node, then pipeline stages."""
    for count in (2, 4, 8, 16, 32, 64):
        if count <= len(hw.gpus):
            continue
        more = _with_gpus(hw, count)
        machine = ("--device", "cuda", "--gpus", str(count), "--gpu-mem-gib",
                   f"{hw.gpus[0].total_bytes / GIB:.2f}".rstrip("0").rstrip("."))
        found = _try(ask, more, f"{count} GPUs like these", _command(ask, machine=machine),
                     "pipeline stages across nodes" if count > GPUS_PER_NODE else "")
        if found is not None:
            return found
    return None
