"""A fake vLLM whose server speaks the agents' protocols (tests/fake_agents.py): see api_server.py."""
__version__ = "0.0.0+fake"
