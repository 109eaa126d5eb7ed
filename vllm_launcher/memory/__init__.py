"""The memory fit, this project's core idea: a model's architecture, its weights and KV cache
as vLLM lays them out, the estimate against a machine, and what would fit instead."""
