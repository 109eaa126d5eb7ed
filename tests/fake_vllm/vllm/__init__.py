"""Fake vLLM for the supervise tests (see api_server.py)."""
__version__ = "0.0.0+fake"
