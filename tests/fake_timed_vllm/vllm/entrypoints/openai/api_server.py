"""A fake `python -m vllm.entrypoints.openai.api_server` whose timing is known, for `bench` and `tune`.

Put `tests/fake_timed_vllm` first on PYTHONPATH and the supervisor starts this instead of vLLM (tune), or
run it directly for `bench --url`. A real aiohttp server on 127.0.0.1: `/health`, `/version`,
`/v1/models`, streamed `/v1/chat/completions` (with usage), `/metrics` in vLLM's names.

Its scheduler, exactly (every time is a sleep until an absolute deadline, so the figures are the truth):
  - at most --max-num-seqs requests run at once; the others wait in order (that wait is part of TTFT);
  - a request's prompt is counted in words (one word, one token: usage.prompt_tokens); with prefix
    caching on (the default; --no-enable-prefix-caching turns it off) the words of an earlier prompt's
    leading 16-word blocks are cached;
  - TTFT = wait + TTFT_MS + ceil(uncached / --max-num-batched-tokens) * CHUNK_MS + uncached * PREFILL_US/1000
  - then one token every ITL_MS + ITL_PER_SEQ_MS * max_num_seqs + ITL_PER_KTOK_MS * batched / 1024
    (a bigger batch and bigger prefill chunks slow every step);
  - tokens: max_completion_tokens (or max_tokens; DEFAULT_TOKENS when absent), fewer without ignore_eos
    only when EOS_AFTER is set.
Environment (milliseconds unless named): FAKE_TIMED_TTFT_MS (40), FAKE_TIMED_CHUNK_MS (0),
FAKE_TIMED_PREFILL_US (0, per uncached token), FAKE_TIMED_ITL_MS (20), FAKE_TIMED_ITL_PER_SEQ_MS (0),
FAKE_TIMED_ITL_PER_KTOK_MS (0), FAKE_TIMED_DEFAULT_TOKENS (16), FAKE_TIMED_EOS_AFTER (none),
FAKE_TIMED_START_S (0.1, until /health answers), FAKE_TIMED_FAIL_EVERY (every Nth chat request answers
500), FAKE_TIMED_DROP_EVERY (every Nth stream is cut after 2 tokens), FAKE_TIMED_REJECT_SEQS (a start
with this --max-num-seqs exits 1 at once, as a failed vLLM start), FAKE_TIMED_LOG (a file: one JSON line
per chat request with what it was sent).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time

from aiohttp import web


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(f"FAKE_TIMED_{name}", default))


class Engine:
    def __init__(self, args: argparse.Namespace) -> None:
        self.served = args.served_model_name or args.model
        self.max_num_seqs = args.max_num_seqs
        self.batched = args.max_num_batched_tokens
        self.prefix_caching = args.enable_prefix_caching
        self.max_model_len = args.max_model_len
        self.slots = asyncio.Semaphore(self.max_num_seqs)
        self.running = 0
        self.waiting = 0
        self.cached: set[tuple[str, ...]] = set()
        self.queries = 0
        self.hits = 0
        self.requests = 0
        self.generation_tokens = 0
        self.ttft_s = env_float("TTFT_MS", 40) / 1000
        self.chunk_s = env_float("CHUNK_MS", 0) / 1000
        self.prefill_s = env_float("PREFILL_US", 0) / 1e6
        self.itl_s = (
            env_float("ITL_MS", 20)
            + env_float("ITL_PER_SEQ_MS", 0) * self.max_num_seqs
            + env_float("ITL_PER_KTOK_MS", 0) * self.batched / 1024
        ) / 1000
        self.default_tokens = int(env_float("DEFAULT_TOKENS", 16))
        eos = os.environ.get("FAKE_TIMED_EOS_AFTER")
        self.eos_after = int(eos) if eos else None
        self.fail_every = int(env_float("FAIL_EVERY", 0))
        self.drop_every = int(env_float("DROP_EVERY", 0))
        self.log_path = os.environ.get("FAKE_TIMED_LOG")

    def words(self, request: dict) -> list[str]:
        words: list[str] = []
        if request.get("tools"):  # first, as chat templates put them into the system prompt
            words += json.dumps(request["tools"]).split()
        for message in request.get("messages") or []:
            content = message.get("content")
            if isinstance(content, list):  # content parts, as vLLM's benchmark client sends them
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            if isinstance(content, str):
                words += content.split()
        return words

    def cached_words(self, words: list[str]) -> int:
        """Leading 16-word blocks seen before (then remembered), as vLLM's block hashes."""
        hit = 0
        blocks = len(words) // 16
        prefixes = [tuple(words[: 16 * (i + 1)]) for i in range(blocks)]
        for prefix in prefixes:
            if prefix in self.cached:
                hit = len(prefix)
            else:
                break
        if self.prefix_caching:
            self.cached.update(prefixes)
        return hit if self.prefix_caching else 0


async def health(request: web.Request) -> web.Response:
    return web.Response(text="")


async def version(request: web.Request) -> web.Response:
    return web.json_response({"version": "0.0.0+timed"})


async def models(request: web.Request) -> web.Response:
    engine: Engine = request.app["engine"]
    return web.json_response(
        {
            "object": "list",
            "data": [
                {
                    "id": engine.served,
                    "object": "model",
                    "owned_by": "vllm",
                    "max_model_len": engine.max_model_len,
                }
            ],
        }
    )


async def metrics(request: web.Request) -> web.Response:
    engine: Engine = request.app["engine"]
    label = f'{{engine="0",model_name="{engine.served}"}}'
    usage = engine.running / engine.max_num_seqs
    lines = [
        f"vllm:num_requests_running{label} {engine.running}.0",
        f"vllm:num_requests_waiting{label} {engine.waiting}.0",
        f"vllm:kv_cache_usage_perc{label} {usage}",
        f"vllm:num_preemptions_total{label} 0.0",
        f"vllm:prefix_cache_queries_total{label} {float(engine.queries)}",
        f"vllm:prefix_cache_hits_total{label} {float(engine.hits)}",
        f"vllm:generation_tokens_total{label} {float(engine.generation_tokens)}",
    ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


def error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "BadRequestError", "code": status}}, status=status
    )


async def sleep_until(deadline: float) -> None:
    delay = deadline - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


async def chat(request: web.Request) -> web.StreamResponse:
    engine: Engine = request.app["engine"]
    body = await request.json()
    engine.requests += 1
    number = engine.requests
    if engine.log_path:
        with open(engine.log_path, "a", encoding="utf-8") as handle:
            handle.write(
                json.dumps(
                    {
                        k: body.get(k)
                        for k in ("model", "max_completion_tokens", "max_tokens", "ignore_eos", "stream")
                    }
                )
                + "\n"
            )
    if body.get("model") != engine.served:
        return error(404, f"The model `{body.get('model')}` does not exist.")
    if engine.fail_every and number % engine.fail_every == 0:
        return error(500, "fake engine fault")
    tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or engine.default_tokens)
    if engine.eos_after and not body.get("ignore_eos"):
        tokens = min(tokens, engine.eos_after)
    words = engine.words(body)
    arrived = time.perf_counter()
    engine.waiting += 1
    async with engine.slots:
        engine.waiting -= 1
        engine.running += 1
        try:
            return await _generate(request, engine, body, words, tokens, arrived, number)
        finally:
            engine.running -= 1


async def _generate(
    request: web.Request,
    engine: Engine,
    body: dict,
    words: list[str],
    tokens: int,
    arrived: float,
    number: int,
) -> web.StreamResponse:
    started = time.perf_counter()
    hit = engine.cached_words(words)
    engine.queries += len(words)
    engine.hits += hit
    uncached = len(words) - hit
    prefill = (
        engine.ttft_s + math.ceil(uncached / engine.batched) * engine.chunk_s + uncached * engine.prefill_s
    )
    first_at = started + prefill
    usage = {"prompt_tokens": len(words), "completion_tokens": tokens, "total_tokens": len(words) + tokens}
    if not body.get("stream"):
        await sleep_until(first_at + (tokens - 1) * engine.itl_s)
        engine.generation_tokens += tokens
        return web.json_response(
            {
                "id": "chatcmpl-timed",
                "object": "chat.completion",
                "model": engine.served,
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "length",
                        "message": {"role": "assistant", "content": " ".join(["tok"] * tokens)},
                    }
                ],
                "usage": usage,
            }
        )
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    drop = engine.drop_every and number % engine.drop_every == 0
    for index in range(tokens):
        await sleep_until(first_at + index * engine.itl_s)
        if drop and index == 2:
            request.transport.close()  # mid-stream: the chunked body never ends
            return response
        delta = {"role": "assistant", "content": "tok "} if index == 0 else {"content": "tok "}
        chunk = {
            "id": "chatcmpl-timed",
            "object": "chat.completion.chunk",
            "model": engine.served,
            "choices": [
                {"index": 0, "delta": delta, "finish_reason": "length" if index == tokens - 1 else None}
            ],
        }
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        engine.generation_tokens += 1
    if (body.get("stream_options") or {}).get("include_usage"):
        final = {
            "id": "chatcmpl-timed",
            "object": "chat.completion.chunk",
            "model": engine.served,
            "choices": [],
            "usage": usage,
        }
        await response.write(f"data: {json.dumps(final)}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--served-model-name")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-num-seqs", type=int, default=4)
    parser.add_argument("--max-num-batched-tokens", type=int, default=2048)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--enable-prefix-caching", action=argparse.BooleanOptionalAction, default=True)
    args, _unknown = parser.parse_known_args()
    print(f"INFO [fake_timed] vLLM API server version 0.0.0+timed; args: {sys.argv[1:]}", flush=True)
    reject = os.environ.get("FAKE_TIMED_REJECT_SEQS")
    if reject and int(reject) == args.max_num_seqs:
        print(f"ValueError: fake: max_num_seqs {args.max_num_seqs} does not fit", flush=True)
        sys.exit(1)
    time.sleep(env_float("START_S", 0.1))

    async def make_app() -> web.Application:
        app = web.Application()
        app["engine"] = Engine(args)
        app.router.add_get("/health", health)
        app.router.add_get("/version", version)
        app.router.add_get("/v1/models", models)
        app.router.add_get("/metrics", metrics)
        app.router.add_post("/v1/chat/completions", chat)
        return app

    print(f"INFO [fake_timed] Starting vLLM server on http://{args.host}:{args.port}", flush=True)
    web.run_app(
        make_app(),
        host=args.host,
        port=args.port,
        print=None,
        access_log=None,
        handle_signals=True,
        shutdown_timeout=1.0,
    )


if __name__ == "__main__":
    main()
