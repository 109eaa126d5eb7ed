"""Coding-agent clients (`vllm-launch launch CLIENT`): one module per client behind an explicit registry
(`clients.registry`), like Ollama's cmd/launch. Each says how to tell it is installed and how to install it,
the context it needs, the environment it reads and the config entries it wants (`clients.edits`); the
shared helpers write those entries merged into the user's files, with a backup, their owner and mode kept,
and a record of what we own (`clients.writing`).
"""
