"""Fake vLLM for the supervise tests (see api_server.py)."""
