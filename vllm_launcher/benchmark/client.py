"""The load generator: streamed chat completions over aiohttp, timed as vLLM's benchmark client times
them (`async_request_openai_chat_completions`): TTFT at the first chunk with choices, one inter-token gap
per later chunk, latency at the last one, the server's usage for the token counts.

Requests leave at a Poisson rate (inf: all at once) under a cap on requests in flight (--concurrency); the
turns of one session (the agent's conversation) run one after another. SIGINT sets a stop: the requests in
flight are cancelled, and what finished is the result (`interrupted`). Before the clock starts, one short
untimed request wakes the server, as vLLM's benchmark sends its "initial single prompt test run".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from vllm_launcher.base.errors import ConfigError
from vllm_launcher.benchmark import server_metrics
from vllm_launcher.benchmark.metrics import RequestRecord
from vllm_launcher.benchmark.workloads import Session, Workload

METRICS_POLL_S = 1.0
PROBE_TIMEOUT_S = 30.0
SHORT_CHAT = [{"role": "user", "content": "Hi"}]  # the probe's and the warm-up's request
PROBE_TOKENS = 2  # the probe's test request: does the model answer at all
WARM_UP_TOKENS = 4
WARM_UP_TIMEOUT_S = 30.0


@dataclass
class Target:
    base_url: str  # http://HOST:PORT/v1
    model: str
    api_key: str | None = None

    @property
    def root(self) -> str:
        return self.base_url.removesuffix("/").removesuffix("/v1")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


@dataclass
class LoadOptions:
    concurrency: int | None = None  # requests in flight at most (None: no cap)
    request_rate: float = math.inf  # requests (sessions) per second, Poisson
    ignore_eos: bool = False  # vLLM's extension: generate exactly max_completion_tokens
    seed: int = 0
    request_timeout_s: float = 3600.0


@dataclass
class Progress:
    done: int = 0
    failed: int = 0
    total: int = 0
    output_tokens: int = 0
    started: float = field(default_factory=time.perf_counter)


@dataclass
class RunResult:
    records: list[RequestRecord]
    duration_s: float
    interrupted: bool = False
    server_before: dict[str, float] | None = None
    server_after: dict[str, float] | None = None
    kv_cache_usage_peak: float | None = None


@dataclass
class ServerInfo:
    models: list[str]
    is_vllm: bool
    version: str | None
    max_model_len: int | None


class SSE:
    """Server-sent events from byte chunks: complete `data:` payloads, as vLLM's StreamedResponseHandler."""

    def __init__(self) -> None:
        self.buffer = ""

    def add(self, chunk: bytes) -> list[str]:
        self.buffer += chunk.decode("utf-8", errors="replace")
        messages = []
        while "\n\n" in self.buffer:
            message, self.buffer = self.buffer.split("\n\n", 1)
            message = message.strip()
            if message:
                messages.append(message)
        return messages


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error_message(status: int, body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return f"HTTP {status}: {_short(body)}"
    if isinstance(data, dict):
        error = data.get("error", data)
        message = error.get("message") if isinstance(error, dict) else error
        return f"HTTP {status}: {_short(str(message or data.get('detail') or body))}"
    return f"HTTP {status}: {_short(body)}"


class _Timing:
    """The clock of one streamed answer, as vLLM's client keeps it."""

    def __init__(self, record: RequestRecord) -> None:
        self.record = record
        self.latest = record.start_time
        self.first = False
        self.finished = False
        self.text: list[str] = []

    def feed(self, message: str, now: float) -> str | None:
        """One SSE message at time NOW; an error text when the stream is broken."""
        if message.startswith(":"):  # an SSE comment (a ping)
            return None
        data_text = message.removeprefix("data:").strip()
        if data_text == "[DONE]":
            self.finished = True
            return None
        try:
            data = json.loads(data_text)
        except ValueError:
            return f"not JSON in the stream: {_short(data_text, 80)}"
        if not isinstance(data, dict):
            return None
        if data.get("error"):
            return f"error in the stream: {_short(str(data['error']))}"
        if choices := data.get("choices"):
            if not self.first:
                self.first = True
                self.record.ttft = now - self.record.start_time
            else:
                self.record.itl.append(now - self.latest)
            self.text.append((choices[0].get("delta") or {}).get("content") or "")
            self.latest = now  # only token chunks move the end; the usage chunk carries none
        usage = data.get("usage")
        if isinstance(usage, dict):
            self.record.output_tokens = int(usage.get("completion_tokens") or 0)
            if usage.get("prompt_tokens") is not None:
                self.record.prompt_len = int(usage["prompt_tokens"])
        return None

    def close(self) -> RequestRecord:
        record = self.record
        record.generated_text = "".join(self.text)
        record.latency = self.latest - record.start_time
        if not self.first:
            record.error = "the stream ended without a token"
        elif not self.finished:
            record.error = "the stream ended before [DONE]"
        else:
            record.success = True
        return record


def _payload(
    target: Target,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    max_tokens: int | None,
    ignore_eos: bool,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": target.model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if max_tokens is not None:
        payload["max_completion_tokens"] = max_tokens
    if tools:
        payload["tools"] = tools
    if ignore_eos:
        payload["ignore_eos"] = True
    return payload


async def chat_request(
    session: aiohttp.ClientSession,
    target: Target,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    max_tokens: int | None,
    ignore_eos: bool,
    prompt_len: int,
) -> RequestRecord:
    """One streamed chat completion, timed like vLLM's client. Never raises for the server's faults: a
    failed request is a record with success False and the error."""
    payload = _payload(target, messages, tools, max_tokens, ignore_eos)
    record = RequestRecord(prompt_len=prompt_len, start_time=time.perf_counter())
    timing = _Timing(record)
    try:
        async with session.post(
            f"{target.base_url}/chat/completions", json=payload, headers=target.headers()
        ) as response:
            if response.status != 200:
                record.error = _error_message(response.status, await response.text(errors="replace"))
                return record
            sse = SSE()
            async for chunk in response.content.iter_any():
                for message in sse.add(chunk):
                    broken = timing.feed(message, time.perf_counter())
                    if broken:
                        record.error = broken
                        return record
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, UnicodeError) as exc:
        record.error = f"{type(exc).__name__}: {_short(str(exc)) or 'the connection failed'}"
        return record
    return timing.close()


def next_messages(
    session: Session, messages: list[dict[str, Any]], answer: RequestRecord, turn: int
) -> list[dict[str, Any]]:
    """An agent's next request: the answer as the assistant's tool call, then the tool's result."""
    call_id = f"call_{session.index}_{turn}"
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": "read_file", "arguments": json.dumps({"path": f"src/part_{turn}.py"})},
    }
    return [
        *messages,
        {"role": "assistant", "content": answer.generated_text or None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": session.tool_results[turn - 1]},
    ]


async def fetch_metrics(session: aiohttp.ClientSession, target: Target) -> dict[str, float] | None:
    try:
        async with session.get(
            f"{target.root}/metrics", headers=target.headers(), timeout=aiohttp.ClientTimeout(total=10)
        ) as response:
            if response.status != 200:
                return None
            return server_metrics.parse(await response.text(errors="replace"))
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        return None


async def probe(target: Target) -> ServerInfo:
    """The server's models and whether it is vLLM, and one short request to the model: ConfigError (one
    line) when it cannot be reached, does not serve the model, or refuses the request."""
    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            async with session.get(f"{target.base_url}/models", headers=target.headers()) as response:
                body = await response.text(errors="replace")
                if response.status != 200:
                    raise ConfigError(
                        f"{target.base_url}/models answered {_error_message(response.status, body)}",
                        source="--url",
                    )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise ConfigError(
                f"cannot reach {target.base_url}: {type(exc).__name__}: {_short(str(exc)) or 'no answer'}",
                source="--url",
            ) from None
        try:
            listed = json.loads(body).get("data") or []
            models = [str(m.get("id")) for m in listed if isinstance(m, dict)]
            lengths = {str(m.get("id")): m.get("max_model_len") for m in listed if isinstance(m, dict)}
        except (ValueError, AttributeError):
            raise ConfigError(
                f"{target.base_url}/models is not an OpenAI model list", source="--url"
            ) from None
        if target.model not in models:
            raise ConfigError(
                f"{target.base_url} does not serve a model named {target.model!r}; it serves: "
                f"{', '.join(models) or 'nothing'}",
                source="--model",
            )
        version = None
        with contextlib.suppress(
            aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError, AttributeError
        ):
            async with session.get(f"{target.root}/version") as response:
                if response.status == 200:
                    version = (await response.json(content_type=None)).get("version")
        test = await chat_request(session, target, SHORT_CHAT, None, PROBE_TOKENS, False, 1)
        if not test.success:
            raise ConfigError(
                f"the test request to {target.model} at {target.base_url} failed: {test.error}",
                source="--url",
            )
        length = lengths.get(target.model)
        return ServerInfo(
            models,
            version is not None,
            str(version) if version else None,
            int(length) if isinstance(length, int) else None,
        )


def arrival_delays(count: int, rate: float, rng: random.Random) -> list[float]:
    """Seconds from the start at which each of COUNT sessions arrives: all at 0 for an infinite rate, else a
    Poisson process of RATE per second (exponential gaps, scaled to total COUNT / RATE, as vLLM does)."""
    if math.isinf(rate):
        return [0.0] * count
    gaps = [rng.expovariate(rate) for _ in range(count)]
    times, total = [], 0.0
    for gap in gaps:
        total += gap
        times.append(total)
    scale = (count / rate) / times[-1] if times and times[-1] > 0 else 1.0
    return [t * scale for t in times]


class _Run:
    """One run's state: the HTTP session, the cap on requests in flight, the records, the progress."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        target: Target,
        options: LoadOptions,
        total: int,
        on_progress: Callable[[Progress], None] | None,
    ) -> None:
        self.http, self.target, self.options = http, target, options
        self.gate = asyncio.Semaphore(options.concurrency) if options.concurrency else None
        self.records: list[RequestRecord] = []
        self.progress = Progress(total=total)
        self.on_progress = on_progress
        self.kv_peak: float | None = None

    async def one(self, session: Session, messages: list[dict[str, Any]], turn: int) -> RequestRecord:
        prompt = session.prompt_tokens if turn == 1 else 0
        async with self.gate or contextlib.nullcontext():
            record = await chat_request(
                self.http,
                self.target,
                messages,
                session.tools,
                session.output_tokens,
                self.options.ignore_eos,
                prompt,
            )
        record.session, record.turn = (session.index, turn) if session.tool_results else (None, None)
        self.records.append(record)
        self.progress.done += 1
        self.progress.failed += 0 if record.success else 1
        self.progress.output_tokens += record.output_tokens
        if self.on_progress is not None:
            self.on_progress(self.progress)
        return record

    async def conversation(self, session: Session, delay_s: float) -> None:
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        messages = session.messages
        for turn in range(1, session.turns + 1):
            answer = await self.one(session, messages, turn)
            if not answer.success:
                return  # the rest of this conversation cannot be sent
            if turn < session.turns:
                messages = next_messages(session, messages, answer, turn)

    async def sample_kv(self) -> None:
        while True:
            await asyncio.sleep(METRICS_POLL_S)
            now = await fetch_metrics(self.http, self.target)
            if now and "kv_cache_usage" in now:
                self.kv_peak = max(self.kv_peak or 0.0, now["kv_cache_usage"])


async def warm_up(
    http: aiohttp.ClientSession, target: Target, options: LoadOptions, stop: asyncio.Event
) -> None:
    """One short untimed request before the clock starts, as vLLM's client sends its "initial single prompt
    test run": the connection is open and a server that sat idle is awake (on CPU its worker threads) when
    the first timed request leaves, so the figures start from the state vLLM's start from. Unrelated to
    every workload's prompts, so turn 1 finds no prefix of its own in the cache; its faults are left for
    the timed requests to report."""
    request = asyncio.ensure_future(
        chat_request(http, target, SHORT_CHAT, None, WARM_UP_TOKENS, options.ignore_eos, 0)
    )
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait([request, stopped], timeout=WARM_UP_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
    for future in (request, stopped):
        future.cancel()
    await asyncio.gather(request, stopped, return_exceptions=True)


async def run(
    target: Target,
    workload: Workload,
    options: LoadOptions,
    on_progress: Callable[[Progress], None] | None = None,
    stop: asyncio.Event | None = None,
) -> RunResult:
    """Send WORKLOAD; the records of every request that finished (in the order they were sent)."""
    stop = stop or asyncio.Event()
    limit = options.concurrency or 0
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=options.request_timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        state = _Run(http, target, options, workload.requests, on_progress)
        await warm_up(http, target, options, stop)
        before = await fetch_metrics(http, target)  # after the warm-up: the server's figures are the load's
        delays = arrival_delays(len(workload.sessions), options.request_rate, random.Random(options.seed))
        started = time.perf_counter()
        state.progress.started = started
        stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        helpers: list[asyncio.Future[Any]] = [stopped]
        if before is not None:
            helpers.append(asyncio.create_task(state.sample_kv()))
        tasks = [
            asyncio.create_task(state.conversation(s, d))
            for s, d in zip(workload.sessions, delays, strict=True)
        ]
        everything: asyncio.Future[Any] = asyncio.gather(*tasks)
        await asyncio.wait([everything, stopped], return_when=asyncio.FIRST_COMPLETED)
        interrupted = stop.is_set() and not everything.done()
        duration = time.perf_counter() - started
        for task in [*tasks, *helpers]:
            task.cancel()
        await asyncio.gather(everything, *helpers, return_exceptions=True)
        after = await fetch_metrics(http, target) if not interrupted else None
    records = sorted(state.records, key=lambda r: r.start_time)
    return RunResult(records, duration, interrupted, before, after, state.kv_peak)


def run_blocking(
    target: Target,
    workload: Workload,
    options: LoadOptions,
    on_progress: Callable[[Progress], None] | None = None,
) -> RunResult:
    """`run` in a new event loop; Ctrl-C (SIGINT) stops the run and returns what finished (interrupted)."""

    async def main() -> RunResult:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        installed = False
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # not the main thread
            loop.add_signal_handler(signal.SIGINT, stop.set)
            installed = True
        try:
            return await run(target, workload, options, on_progress, stop)
        finally:
            if installed:
                loop.remove_signal_handler(signal.SIGINT)

    return asyncio.run(main())


def probe_blocking(target: Target) -> ServerInfo:
    return asyncio.run(probe(target))
