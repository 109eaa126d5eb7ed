"""Measuring a served model: workloads (random, prefix, agent, a JSONL file), the streaming load generator,
the figures with vLLM's definitions and key names, the server's own /metrics, reports, and tune's grid.

Nothing here imports vLLM, torch or transformers at import time: vLLM's metric code is used when it can be
imported, at run time only (benchmark.metrics).
"""
