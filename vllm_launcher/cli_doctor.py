"""`vllm-launch` commands for the doctor area (registered on the app from cli.py)."""
