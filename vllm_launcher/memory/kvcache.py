"""How vLLM 0.32 lays out the KV cache of one worker, and what it then logs. Pure.

Layers are grouped by attention type (vllm/v1/core/kv_cache_utils.py, _get_kv_cache_groups_uniform_page_size):
the group size is the smallest type's layer count (or the largest, padded, when the counts are within
1.5x), each type gets ceil(its layers / group size) groups, and all groups draw blocks from one pool whose
block holds `group size` layers' pages. A request of max_model_len takes, from every group, what its spec
needs (kv_cache_interface.py): full attention and MLA cdiv(max_model_len, block); a sliding window
cdiv(min(window - 1 + in-flight tokens, max_model_len), block) + 1, in-flight tokens being
max_num_batched_tokens times the concurrent batches (2 with async scheduling, vLLM's default on CUDA; PP
on CPU). vLLM logs int(num_blocks / blocks per request x max_model_len) tokens and keeps one block back
(the null block), so one request fits when num_blocks - 1 covers it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from vllm_launcher.memory.arch import ModelArch

GPU_BLOCK_SIZE = 16
CPU_BLOCK_SIZE = 128
CPU_MLA_BLOCK_SIZE = 16

# vLLM 0.32's two MLA attention backends on CPU (platforms/cpu.py get_attn_backend_cls and
# check_and_update_config). On x86 with AMX tiles it takes AMX_MLA unless `--attention-backend CPU_MLA`
# asks for the reference one; AMX_MLA keeps the CPU's default block of 128 and packs its weights with
# convert_weight_packed, which takes only these dtypes (v1/attention/backends/mla/amx_mla.py; float32 fails
# at start-up: "expect weight to be bfloat16, float16, int8, fp8_e4m3 or uint8"), and only an
# unquantized KV cache. The reference CPU_MLA runs any dtype with blocks of 16.
AMX_MLA, REFERENCE_MLA = "AMX_MLA", "CPU_MLA"
AMX_MLA_PACKED_DTYPES = ("bfloat16", "float16")  # model dtypes whose weights AMX_MLA can pack
AMX_MLA_KERNEL_DTYPE = "bfloat16"  # its only declared dtype (AMXMLABackend.supported_dtypes)


def cpu_mla_backend(amx_tile: bool | None, x86: bool | None, requested: str | None = None) -> str | None:
    """The MLA backend vLLM's CPU platform picks: AMX_MLA on x86 with AMX tiles unless REQUESTED is CPU_MLA,
    else CPU_MLA; None when the CPU's flags are unknown (a saved probe without them)."""
    if requested == REFERENCE_MLA:
        return REFERENCE_MLA
    if amx_tile is None or x86 is None:
        return None
    return AMX_MLA if amx_tile and x86 else REFERENCE_MLA


@dataclass(frozen=True)
class KvGroup:
    kind: str  # "full", "sliding" or "mla"
    window: int | None = None

    def blocks_per_request(self, max_len: int, in_flight: int, block: int) -> int:
        if self.kind == "sliding" and self.window:
            return math.ceil(min(self.window - 1 + in_flight, max_len) / block) + 1
        return math.ceil(max_len / block)


@dataclass(frozen=True)
class KvLayout:
    """One worker's KV cache: groups sharing a pool of blocks of `block_size` tokens."""

    block_size: int
    layer_page_bytes: int  # one layer's share of one block
    group_size: int  # this worker's layers in its largest group: a block spans that many layers' pages
    groups: tuple[KvGroup, ...]
    bytes_per_token: int  # all of this worker's layers, one token (what a full-attention model needs)

    @property
    def block_bytes(self) -> int:
        return self.layer_page_bytes * self.group_size

    def num_blocks(self, kv_bytes: int) -> int:
        return max(0, kv_bytes) // self.block_bytes if self.block_bytes else 0

    def blocks_per_request(self, max_len: int, in_flight: int) -> int:
        return sum(g.blocks_per_request(max_len, in_flight, self.block_size) for g in self.groups)

    def reported(self, num_blocks: int, max_len: int, in_flight: int) -> tuple[int, float]:
        """vLLM's logged (KV cache size in tokens, maximum concurrency at max_len)."""
        per_request = self.blocks_per_request(max_len, in_flight)
        concurrency = num_blocks / per_request if per_request else 0.0
        return int(concurrency * max_len), concurrency

    def fits_one(self, num_blocks: int, max_len: int, in_flight: int) -> bool:
        return num_blocks - 1 >= self.blocks_per_request(max_len, in_flight)

    def longest(self, num_blocks: int, in_flight: int, limit: int) -> int:
        """The largest max_model_len (at most LIMIT) one request fits in."""
        low, high = 0, max(0, limit)
        while low < high:  # fits_one is monotonic in max_len
            mid = (low + high + 1) // 2
            if self.fits_one(num_blocks, mid, in_flight):
                low = mid
            else:
                high = mid - 1
        return low

    def bytes_for_one(self, max_len: int, in_flight: int) -> int:
        """KV bytes one request of max_len needs, with the null block."""
        return (self.blocks_per_request(max_len, in_flight) + 1) * self.block_bytes


def kv_dtype_bytes(kv_dtype: str | None, model_dtype: str) -> int:
    from vllm_launcher.memory.weights import DTYPE_BYTES

    if kv_dtype and kv_dtype.startswith("fp8"):
        return 1
    if kv_dtype and kv_dtype != "auto":
        return DTYPE_BYTES.get(kv_dtype, 2)
    return DTYPE_BYTES.get(model_dtype, 2)


def layer_token_bytes(arch: ModelArch, tp: int, dtype_bytes: int) -> int:
    """One layer, one token, one worker: K and V of the KV heads on this rank (at least one: vLLM
    replicates heads when TP exceeds them); MLA keeps one latent (kv_lora_rank + rope dims), on every rank."""
    if arch.is_mla:
        return ((arch.kv_lora_rank or 0) + (arch.qk_rope_head_dim or 0)) * dtype_bytes
    return 2 * max(1, arch.num_kv_heads // tp) * arch.head_dim * dtype_bytes


def sliding_layers(arch: ModelArch, hybrid: bool = True) -> list[bool]:
    """Which layers attend within the window. ModelArch keeps the count; the patterns vLLM's models use
    (Gemma 2 every other layer, Gemma 3 five of six, gpt-oss alternating, Mistral all) spread evenly."""
    count = arch.sliding_window_layers if arch.sliding_window and hybrid else 0
    n = arch.num_layers
    return [(i + 1) * count // n > i * count // n for i in range(n)]


def layout(arch: ModelArch, device: str, tp: int = 1, pp: int = 1, kv_dtype: str | None = None,
           model_dtype: str = "bfloat16", stage: int | None = None, hybrid: bool = True,
           mla_backend: str | None = None) -> KvLayout:
    """The KV layout of the worker holding pipeline stage STAGE (None: the stage whose blocks are largest).
    vLLM groups the whole model's layers (get_kv_cache_groups), then projects the groups onto each
    worker's layers (_project_kv_cache_groups_to_worker): a worker's block spans its share of the largest
    group, and a request still needs blocks from every group. Without the hybrid allocator
    (--disable-hybrid-kv-cache-manager) sliding layers are sized as full attention. MLA_BACKEND: the CPU
    MLA backend (cpu_mla_backend; None is taken as the reference one)."""
    from vllm_launcher.memory.weights import pp_partition

    block = GPU_BLOCK_SIZE
    if device == "cpu":
        block = CPU_MLA_BLOCK_SIZE if arch.is_mla and mla_backend != AMX_MLA else CPU_BLOCK_SIZE
    per_layer = layer_token_bytes(arch, tp, kv_dtype_bytes(kv_dtype, model_dtype))
    slides = sliding_layers(arch, hybrid)
    by_kind = {"mla" if arch.is_mla else "full": [i for i, s in enumerate(slides) if not s],
               "sliding": [i for i, s in enumerate(slides) if s]}
    counts = [len(layers) for layers in by_kind.values() if layers]
    group_size = min(counts) if counts else 1
    if counts and max(counts) < group_size * 1.5:
        group_size = max(counts)
    groups: list[tuple[KvGroup, list[int]]] = []
    for kind, layers in by_kind.items():
        if layers:
            count = math.ceil(len(layers) / group_size)
            window = arch.sliding_window if kind == "sliding" else None
            groups.extend((KvGroup(kind, window), layers[i::count]) for i in range(count))
    parts = pp_partition(arch.num_layers, pp)
    starts = [sum(parts[:i]) for i in range(pp)]

    def stage_block_layers(index: int) -> int:
        low, high = starts[index], starts[index] + parts[index]
        return max((sum(1 for layer in members if low <= layer < high) for _, members in groups), default=0)

    index = max(range(pp), key=stage_block_layers) if stage is None else stage
    return KvLayout(block_size=block, layer_page_bytes=block * per_layer,
                    group_size=stage_block_layers(index), groups=tuple(g for g, _ in groups),
                    bytes_per_token=parts[index] * per_layer)


def in_flight_tokens(device: str, batched: int, pp: int) -> int:
    """Tokens scheduled but not settled (VllmConfig.max_in_flight_tokens): async scheduling, vLLM 0.32's
    default on CUDA without PP, keeps two batches in flight; CPU turns it off (platforms/cpu.py)."""
    if device == "cpu":
        return batched * pp
    return batched * (2 if pp <= 1 else pp)


def requested_attention_backend(extra_args: list[str]) -> str | None:
    """The backend an `--attention-backend=NAME` (or `--attention-config.backend=NAME`) in extra_args asks
    for; the last one wins, as in vLLM's parser."""
    found = None
    for arg in extra_args:
        key, sep, value = arg.partition("=")
        if sep and key.replace("_", "-") in ("--attention-backend", "--attention-config.backend"):
            found = value.strip().upper() or None
    return found


@dataclass(frozen=True)
class BackendProblem:
    severity: Literal["error", "warning"]  # error: vLLM fails at start-up; warning: outside what it declares
    message: str
    fix: str


def amx_mla_problems(backend: str | None, model_dtype: str, kv_dtype: str | None) -> list[BackendProblem]:
    """What vLLM 0.32's AMX MLA backend refuses of this launch (nothing for any other backend)."""
    if backend != AMX_MLA:
        return []
    problems = []
    why = ("this CPU has AMX (amx_tile), so vLLM runs MLA attention with its AMX_MLA backend, which "
           "packs its weights only in bfloat16/float16 (or int8/fp8/4-bit checkpoints)")
    fix = ("set dtype: bfloat16 (or extra_args: ['--attention-backend=CPU_MLA'] for the slower reference "
           "backend, which runs any dtype)")
    if model_dtype not in AMX_MLA_PACKED_DTYPES:
        problems.append(BackendProblem("error", f"dtype {model_dtype} with an MLA model: {why}; start-up "
                                       "fails with \"RuntimeError: expect weight to be bfloat16, float16, "
                                       "int8, fp8_e4m3 or uint8\"", fix))
    elif model_dtype != AMX_MLA_KERNEL_DTYPE:
        problems.append(BackendProblem("warning", f"dtype {model_dtype} with an MLA model: this CPU has AMX, "
                                       "and vLLM's AMX_MLA backend declares bfloat16 only", fix))
    if kv_dtype and kv_dtype not in ("auto", model_dtype):
        problems.append(BackendProblem("error", f"kv_cache_dtype {kv_dtype} with an MLA model on an AMX CPU: "
                                       "vLLM's AMX_MLA backend supports only an unquantized KV cache "
                                       "(\"AMXMLAImpl only supports an unquantized (bf16) KV cache\")",
                                       "remove kv_cache_dtype (or extra_args: "
                                       "['--attention-backend=CPU_MLA'])"))
    return problems
