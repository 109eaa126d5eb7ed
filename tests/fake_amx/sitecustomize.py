"""Test-only: make torch report AMX tiles, so that real vLLM takes the code path of a CPU with AMX.

Put this directory on PYTHONPATH of a vLLM process (Python imports `sitecustomize` at start-up, in every
process vLLM spawns). vLLM's CPU platform asks `torch.cpu._is_amx_tile_supported()` to choose its MLA
attention backend (vllm/platforms/cpu.py): with this it takes AMX_MLA, sizes the KV cache in blocks of 128
and packs its weights with convert_weight_packed, which refuses float32 exactly as on an AMX CPU. Only
that packing and the KV sizing run before the KV line is logged, and neither needs AMX instructions, so a
start that stops at the KV line reproduces an AMX CPU here; running a request would not. On a CPU that
has AMX this changes nothing.
"""

import torch

torch.cpu._is_amx_tile_supported = lambda: True
