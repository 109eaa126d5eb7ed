"""vllm-launch: start and keep a vLLM server, correct on the first try."""

__version__ = "0.1.0"
