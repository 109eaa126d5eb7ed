"""`vllm-launch` commands for the fit area (registered on the app from cli.py)."""
