"""`vllm-launch` commands for the supervise area (registered on the app from cli.py)."""
