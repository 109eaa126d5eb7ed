"""A fake vLLM with known timing, for the bench and tune tests (see entrypoints/openai/api_server.py)."""
__version__ = "0.0.0+timed"
