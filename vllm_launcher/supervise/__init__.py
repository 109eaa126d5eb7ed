"""Supervision: spawn vLLM in its own session, notice readiness, restart it, stop it leaving nothing behind.

Modules: `state` (one JSON record per server), `procs` (process trees, signals, ports, /dev/shm),
`readiness` (/health + /v1/models, log phases), `diagnose` (vLLM error texts → cause and fix),
`history` (ready times for ETA), `supervisor` (the start/watch/restart loop), `daemon` (the detached
supervisor process), `preflight` (checks before spawning).

Everything here is stdlib + psutil: the detached supervisor must stay small (no typer, httpx, rich).
"""
