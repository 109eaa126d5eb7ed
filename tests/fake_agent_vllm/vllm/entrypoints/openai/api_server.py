"""`python -m vllm.entrypoints.openai.api_server` as the gateway starts it, serving tests/fake_agents.py's
FakeAgentBackend (Responses, Messages, chat) on --host/--port under the served name, each request appended
to $FAKE_AGENT_LOG (JSON lines). With tests/fake_agent_vllm first on PYTHONPATH, a preset served through the
real gateway reaches it, so a real agent CLI goes client -> gateway -> this server."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # tests/, for fake_agents

from fake_agents import FakeAgentBackend


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--served-model-name")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-model-len", type=int, default=131072)
    args, _unknown = parser.parse_known_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    print(f"INFO vLLM API server version 0.0.0+fake; args: model={args.model}", flush=True)
    backend = FakeAgentBackend(args.served_model_name or args.model, args.max_model_len, host=args.host,
                               port=args.port, log_path=os.environ.get("FAKE_AGENT_LOG"))
    with backend:
        print(f"INFO Starting vLLM server on http://{args.host}:{args.port}", flush=True)
        print("INFO Application startup complete.", flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
