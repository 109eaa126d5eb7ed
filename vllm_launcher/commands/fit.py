"""`probe`, `estimate` and `fit`: this machine, the memory a preset needs, and a preset that fits.

Exit codes: `estimate` exits 1 when the preset does not fit, in human and JSON mode alike (the JSON is
still printed, with "fits": false), so scripts can test it either way; 2 for bad input; 0 when it fits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vllm_launcher.base.errors import EXIT_FAILURE, ConfigError, LaunchError
from vllm_launcher.base.output import Result, table
from vllm_launcher.base.units import GIB

if TYPE_CHECKING:
    from vllm_launcher.machine.hardware import Hardware
    from vllm_launcher.memory.estimate import Estimate
    from vllm_launcher.preset.schema import Override, Preset

BAR_WIDTH = 60
BAR_SYMBOLS = {"weights": "W", "activations": "A", "non-torch": "N", "cuda graphs": "G", "KV cache": "K",
               "runtime": "R", "unused": ".", "free": "."}

# ------------------------------------------------------------------------------------------ helpers


def select_hardware(hardware_file: str | None = None, device: str | None = None, gpus: int | None = None,
                    gpu_mem_gib: float | None = None, ram_gib: float | None = None) -> Hardware:
    """--hardware FILE, else a hypothetical machine when --device/--gpus/--gpu-mem-gib are given, else
    this machine's probe."""
    from vllm_launcher.base.inputs import MAX_GPU_MEM_GIB, MAX_GPUS, MAX_RAM_GIB, check_number
    from vllm_launcher.machine import hardware

    check_number("--gpus", gpus, low=1, high=MAX_GPUS)
    check_number("--gpu-mem-gib", gpu_mem_gib, low=0, high=MAX_GPU_MEM_GIB, low_inclusive=False)
    check_number("--ram-gib", ram_gib, low=0, high=MAX_RAM_GIB, low_inclusive=False)
    if device is not None and device not in ("cuda", "cpu"):
        raise ConfigError(f"must be cuda or cpu, not {device!r}", source="--device")
    hypothetical_asked = device is not None or gpus is not None or gpu_mem_gib is not None
    if hardware_file and hypothetical_asked:
        raise ConfigError("give either --hardware FILE or --device/--gpus/--gpu-mem-gib, not both",
                          field="--hardware")
    if hardware_file:
        return hardware.load_hardware(hardware_file)
    if not hypothetical_asked and ram_gib is None:
        return hardware.probe()
    if device is None:
        device = "cuda" if gpus or gpu_mem_gib else "cpu"
    if device == "cuda" and gpu_mem_gib is None:
        raise ConfigError("a hypothetical GPU machine needs --gpu-mem-gib (e.g. 79.19 for an H100 80GB)",
                          field="--gpu-mem-gib")
    base = None if ram_gib is not None else hardware.probe(include_gpus=False)
    return hardware.hypothetical(device, gpus or 1, gpu_mem_gib or 0.0, ram_gib=ram_gib, base=base)


def preset_for(ref: str | None, overrides: list[Override], device: str | None) -> Preset:
    """A named preset with overrides, or (no name) a preset built from --model and the overrides."""
    from vllm_launcher.preset import schema as presets

    if ref and looks_like_model_id(ref):
        overrides = [("PRESET", "model", ref), *overrides]
        ref = None
    if ref:
        return presets.resolve(ref, overrides).preset
    if not any(field == "model" for _label, field, _value in overrides):
        raise ConfigError("give a PRESET or --model MODEL", field="PRESET")
    return presets.build_preset({"name": "model", "device": device or "cuda"}, overrides, "command line")


def looks_like_model_id(ref: str) -> bool:
    """`ORG/NAME` that is no file: a Hugging Face model id (`estimate Qwen/Qwen2.5-7B-Instruct`), not
    a preset."""
    import os

    return (ref.count("/") == 1 and not ref.startswith((".", "/", "~"))
            and not ref.endswith((".yaml", ".yml")) and not os.path.exists(ref))


def estimate_as_dict(est: Estimate) -> dict:
    data = est.model_dump()
    data["breakdown"] = [{"label": label, "gib": value} for label, value in est.breakdown]
    return data


def format_bar(breakdown: list[tuple[str, float]], width: int = BAR_WIDTH) -> str:
    """A text bar of where the memory goes, e.g. `[WWWWAKKKKKKKK....]`, and its legend."""
    total = sum(max(0.0, v) for _label, v in breakdown) or 1.0
    cells = ""
    for label, value in breakdown:
        cells += BAR_SYMBOLS.get(label, "?") * round(max(0.0, value) / total * width)
    cells = (cells + "." * width)[:width]
    legend = "  ".join(f"{BAR_SYMBOLS.get(label, '?')} {label} {value:g}" for label, value in breakdown
                       if value > 0)
    return f"[{cells}]\n {legend} (GiB)"


def _wrapped_rows(label: str, text: str, width: int = 88) -> list[list[object]]:
    """One table row per wrapped line (the label on the first): long texts shown whole."""
    import textwrap

    lines = textwrap.wrap(text, width) or [""]
    return [[label if i == 0 else "", line] for i, line in enumerate(lines)]


def format_estimate(est: Estimate, name: str, hw: Hardware) -> str:
    no_gpu = est.device == "cuda" and not hw.gpus
    if est.device == "cuda":
        where = (f"{len(hw.gpus)} x {hw.gpus[0].name} ({est.gpu_total_gib} GiB)" if hw.gpus
                 else "a machine with no GPU visible")
    else:
        where = f"CPU, {est.ram_available_gib} GiB RAM available"
    layout = (f", PP {est.pipeline_parallel_size}" if est.pipeline_parallel_size > 1 else "") + (
        f", DP {est.data_parallel_size} (figures per engine)" if est.data_parallel_size > 1 else "")
    rows: list[list[object]] = [
        ["model", f"{est.model} ({est.model_dtype}, TP {est.tensor_parallel_size}{layout})"],
        *_wrapped_rows("architecture from", est.arch_source),
        *[row for default in est.arch_defaults for row in _wrapped_rows("config default", default)],
        ["weights", f"{est.weights_gib} GiB total, {est.weights_bytes_per_gpu / GIB:.2f} GiB per worker"
                    + (f", {est.quantization}" if est.quantization else "")],
        ["KV bytes per token", f"{est.kv_bytes_per_token:,} ({est.kv_cache_dtype})"
                               + (f"; KV groups: {', '.join(est.kv_groups)}" if len(est.kv_groups) > 1
                                  or est.kv_groups[:1] != ["full"] else "")],
    ]
    if no_gpu:
        # Nothing to size against: say so, and how to check this preset for a GPU machine.
        lines = [f"{name} on {where}", table(["", ""], rows).split("\n", 1)[1], "",
                 "DOES NOT FIT: no GPU is visible on this machine, and this preset needs one (device: cuda).",
                 "  fix: check it against a GPU machine: --device cuda --gpus N --gpu-mem-gib X",
                 "       (e.g. --gpus 1 --gpu-mem-gib 79.19 for an H100 80GB),",
                 "       or --hardware FILE (saved there with `vllm-launch probe --json > FILE`)"]
        lines += [f"  warning: {w}" for w in est.warnings]
        return "\n".join(lines)
    if est.device == "cuda":
        rows += [["requested",
                  f"{est.requested_gib} GiB ({est.gpu_memory_utilization} x {est.gpu_total_gib})"],
                 ["activations", f"{est.activation_gib} GiB at {est.max_num_batched_tokens} batched tokens "
                                 f"(sampler {est.sampler_gib} GiB for {est.max_num_seqs} sequences)"],
                 ["non-torch + graphs", f"{est.non_torch_gib} + {est.cuda_graph_gib} GiB"]]
    else:
        rows += [*_wrapped_rows("KV space from", est.kv_space_source),
                 ["host RAM needed", f"{est.ram_needed_gib} GiB of {est.ram_available_gib} available"]]
    rows += [["KV cache",
              f"{est.kv_cache_gib} GiB, {est.kv_cache_tokens:,} tokens (blocks of {est.block_size})"],
             ["max concurrency", f"{est.max_concurrency}x at max_model_len {est.effective_max_model_len}"],
             ["largest max_model_len", est.largest_max_model_len or "none (the KV cache holds no request)"]]
    lines = [f"{name} on {where}", table(["", ""], rows).split("\n", 1)[1], "", format_bar(est.breakdown)]
    lines.append("")
    lines.append("fits" if est.fits else "DOES NOT FIT")
    lines += [f"  reason: {r}" for r in est.reasons]
    lines += [f"  fix: {f}" for f in est.fixes]
    lines += [f"  warning: {w}" for w in est.warnings]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- command logic


def probe(as_json: bool = False) -> Result:
    """This machine: GPUs, RAM, cores, NUMA nodes and the installed vLLM."""
    from vllm_launcher.machine.hardware import probe as run_probe

    hw = run_probe()
    lines = []
    rows = [[g.index, g.name, f"{g.total_bytes / GIB:.2f}", f"{g.free_bytes / GIB:.2f}",
             ".".join(map(str, g.compute_capability)) if g.compute_capability else ""] for g in hw.gpus]
    if rows:
        lines.append(table(["GPU", "NAME", "TOTAL GiB", "FREE GiB", "CC"], rows))
    else:
        lines.append("GPUs: none" + ("" if hw.cuda_available else " (CUDA not available)"))
    lines.append(f"RAM: {hw.ram_total_bytes / GIB:.2f} GiB total, "
                 f"{hw.ram_available_bytes / GIB:.2f} GiB available")
    lines.append(f"CPU: {hw.cpu_physical or '?'} physical / {hw.cpu_logical} logical cores"
                 + (f" ({hw.cpu_arch})" if hw.cpu_arch else ""))
    if hw.cpu_flags is not None:
        lines.append(f"CPU features vLLM uses: {', '.join(hw.cpu_flags) or 'none of AMX, AVX-512, AVX2'}")
    for node in hw.numa_nodes:
        total = f"{node.total_bytes / GIB:.2f}" if node.total_bytes else "?"
        free = f"{node.free_bytes / GIB:.2f}" if node.free_bytes is not None else "?"
        lines.append(f"NUMA node {node.id}: {free}/{total} GiB available")
    lines.append(f"vLLM: {hw.vllm.distribution} {hw.vllm.version}" if hw.vllm else "vLLM: not installed")
    lines.append(f"torch: {'imported' if hw.torch_available else 'not imported'}; "
                 f"GPUs read via {hw.gpu_source}")
    lines += [f"note: {note}" for note in hw.notes]
    return Result(text="\n".join(lines), data=hw.model_dump(mode="json"), as_json=as_json)


def estimate(preset: str | None = None, as_json: bool = False, hardware_file: str | None = None,
             device: str | None = None, gpus: int | None = None, gpu_mem_gib: float | None = None,
             ram_gib: float | None = None, overrides: list[Override] | None = None) -> Result:
    """Memory estimate of a preset (or --model) on this or a hypothetical machine; exit 1 when it does not
    fit."""
    from vllm_launcher.memory.arch import load_arch
    from vllm_launcher.memory.estimate import estimate as run_estimate

    resolved = preset_for(preset, overrides or [], device)
    hw = select_hardware(hardware_file, device, gpus, gpu_mem_gib, ram_gib)
    est = run_estimate(resolved, load_arch(resolved.model), hw)
    return Result(text=format_estimate(est, preset or resolved.model, hw), data=estimate_as_dict(est),
                  as_json=as_json, code=0 if est.fits else EXIT_FAILURE)


def save_user_preset(preset: Preset, name: str, force: bool) -> str:
    """Write `preset` as the user preset NAME, atomically; refuses to replace one unless `force`."""
    from vllm_launcher.base import atomic
    from vllm_launcher.base.paths import user_presets_dir
    from vllm_launcher.memory.fit import check_preset_name
    from vllm_launcher.preset.schema import preset_as_yaml

    check_preset_name(name)
    directory = user_presets_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LaunchError(f"cannot create {directory}: {exc.strerror or exc}") from None
    target = directory / f"{name}.yaml"
    if target.exists() and not force:
        raise ConfigError(f"user preset {name!r} exists; use --force to replace it", source=target)
    try:
        atomic.write_text(target, preset_as_yaml(preset.model_copy(update={"name": name})), mode=0o600)
    except OSError as exc:  # a full or read-only disk: nothing half-written is left (atomic)
        raise LaunchError(f"cannot save {target}: {exc.strerror or exc}") from None
    return str(target)


def fit(model: str, context: int | None = None, concurrency: int = 1, save: str | None = None,
        force: bool = False, hardware_file: str | None = None, device: str | None = None,
        gpus: int | None = None, gpu_mem_gib: float | None = None, ram_gib: float | None = None,
        quantization: str | None = None, kv_cache_dtype: str | None = None, others: list[str] | None = None,
        as_json: bool = False) -> Result:
    """A working preset for MODEL on this (or a hypothetical) machine, as YAML; optionally saved. When
    nothing fits: exit 1, the reason, and the nearest launches that would fit, each with its estimate and
    the command that gives it."""
    from vllm_launcher.base.inputs import check_number
    from vllm_launcher.memory.fit import Ask, check_preset_name
    from vllm_launcher.memory.fit import fit as propose
    from vllm_launcher.preset.schema import MAX_TOKENS, QUANTIZATION_METHODS, preset_as_yaml

    if save is not None:
        check_preset_name(save)
    if concurrency < 1:
        raise ConfigError("must be at least 1", field="--concurrency")
    check_number("--concurrency", concurrency, low=1, high=MAX_TOKENS)
    if context is not None and context < 16:
        raise ConfigError("must be at least 16 tokens", field="--context")
    check_number("--context", context, low=16, high=MAX_TOKENS)
    if quantization is not None and quantization not in QUANTIZATION_METHODS:
        raise ConfigError(f"{quantization!r} is not a vLLM quantization (e.g. fp8)", field="--quantization")
    if kv_cache_dtype is not None and kv_cache_dtype not in KV_CACHE_DTYPES:
        raise ConfigError(f"must be one of {', '.join(KV_CACHE_DTYPES)}", field="--kv-cache-dtype")
    hw = select_hardware(hardware_file, device, gpus, gpu_mem_gib, ram_gib)
    try:
        preset = propose(model, hw, context=context, concurrency=concurrency, device=device, name=save,
                         quantization=quantization, kv_cache_dtype=kv_cache_dtype)
    except ConfigError:
        raise
    except LaunchError as exc:
        ask = Ask(model, context, concurrency, device, _machine_args(hardware_file, device, gpus, gpu_mem_gib,
                                                                     ram_gib), tuple(others or ()),
                  quantization, kv_cache_dtype)
        return _no_fit(str(exc), ask, hw, as_json)
    notes = [f"saved {save_user_preset(preset, save, force)}"] if save else []
    if as_json:
        from vllm_launcher.memory.arch import load_arch
        from vllm_launcher.memory.estimate import estimate as run_estimate

        est = run_estimate(preset, load_arch(preset.model), hw)
        return Result(data={"fits": True, "preset": preset.model_dump(mode="json", exclude_none=True),
                            "estimate": estimate_as_dict(est)}, as_json=True, notes=notes)
    return Result(text=preset_as_yaml(preset).rstrip("\n"), notes=notes)


KV_CACHE_DTYPES = ("auto", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2")


def _machine_args(hardware_file: str | None, device: str | None, gpus: int | None, gpu_mem_gib: float | None,
                  ram_gib: float | None) -> tuple[str, ...]:
    """The machine as the command line gave it, to repeat in a proposal's command."""
    if hardware_file:
        return ("--hardware", hardware_file)
    args: list[str] = []
    for flag, value in (("--device", device), ("--gpus", gpus), ("--gpu-mem-gib", gpu_mem_gib),
                        ("--ram-gib", ram_gib)):
        if value is not None:
            args += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return tuple(args)


def _no_fit(reason: str, ask, hw: Hardware, as_json: bool) -> Result:
    import shlex

    from vllm_launcher.memory.fit import proposals

    found = proposals(ask, hw)
    data = {"fits": False, "reason": reason, "proposals": [
        {"change": p.change, "note": p.note, "command": shlex.join(p.command),
         "preset": p.preset.model_dump(mode="json", exclude_none=True),
         "estimate": estimate_as_dict(p.estimate)}
        for p in found]}
    if as_json:
        return Result(data=data, as_json=True, code=EXIT_FAILURE)
    lines = ["Nearest launches that fit:" if found else "No nearby launch fits either (tried: online fp8, an "
             "fp8 KV cache, a shorter context, quantized checkpoints, more GPUs)."]
    for p in found:
        est = p.estimate
        gpus = est.tensor_parallel_size * est.pipeline_parallel_size
        layout = (f"TP {est.tensor_parallel_size}" + (f" x PP {est.pipeline_parallel_size}"
                                                     if est.pipeline_parallel_size > 1 else "")
                  if est.device == "cuda" else "CPU")
        per = " per GPU" if est.device == "cuda" else ""
        lines.append(f"  - {p.change}: {layout} ({gpus} GPU{'s' if gpus > 1 else ''}), max_model_len "
                     f"{est.effective_max_model_len}, weights {est.weights_bytes_per_gpu / GIB:.2f} GiB"
                     f"{per}, "
                     f"KV cache {est.kv_cache_gib} GiB "
                     f"({est.kv_cache_tokens:,} tokens, {est.max_concurrency}x)"
                     + (f"; {p.note}" if p.note else ""))
        lines.append(f"      {shlex.join(p.command)}")
    return Result(text="\n".join(lines), errors=[reason], code=EXIT_FAILURE)
