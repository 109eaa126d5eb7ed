"""The gateway's HTTP side (aiohttp): route by the body's `model`, forward faithfully, answer errors in
OpenAI's shape.

Faithful: the upstream's status, headers (minus hop-by-hop ones) and body pass unchanged; server-sent
events pass chunk by chunk as they arrive; a client that goes away closes the upstream request (vLLM then
aborts it); an upstream that dies mid-request is a 502 (mid-stream: an error event, the status is already
sent). The only change to a request body: `model` is rewritten to the name the server serves when the
client used a preset name or an alias.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

from vllm_launcher.gateway.backends import Backend, Fleet, GatewayError
from vllm_launcher.gateway.metrics import Metrics

ROUTED_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/tokenize",
                "/detokenize")
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "trailers", "transfer-encoding", "upgrade", "content-length", "host",
                        "authorization"})
FLEET_KEY = web.AppKey("fleet", Fleet)
METRICS_KEY = web.AppKey("metrics", Metrics)
API_KEY_KEY = web.AppKey("api_key", str)
LOG_KEY = web.AppKey("log", object)
# Set on a request once a streamed answer's last event (`data: [DONE]`) is relayed: a client that hangs up
# then (the OpenAI SDK closes on it) got the whole answer, so it counts as the upstream's status, not 499.
STREAM_RELAYED = "vllm_launch_stream_relayed"


def error_response(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
                   retry_after_s: int | None = None) -> web.Response:
    """OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code or str(status)}}
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return web.json_response(body, status=status, headers=headers)


def forwarded_headers(headers: Any) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}


@web.middleware
async def authorize(request: web.Request, handler: Any) -> web.StreamResponse:
    """The gateway's own key (--api-key-env), constant-time compared; /health and /metrics stay open, as
    vLLM's do."""
    key = request.app[API_KEY_KEY]
    if key and request.path not in ("/health", "/metrics"):
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
            return error_response(401, "missing or wrong API key (Authorization: Bearer ...)",
                                  "authentication_error", "invalid_api_key")
    return await handler(request)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    text, content_type = request.app[METRICS_KEY].render(request.app[FLEET_KEY])
    return web.Response(body=text, headers={"Content-Type": content_type})


async def list_models(request: web.Request) -> web.Response:
    """Every routable name with its model's state and context length (OpenAI's list shape, plus fields)."""
    fleet = request.app[FLEET_KEY]
    data = []
    for name, route in fleet.table.by_name.items():
        backend = fleet.backends[route.name]
        data.append({"id": name, "object": "model", "owned_by": "vllm-launch", "created": 0,
                     "root": route.served, "preset": route.name, "state": fleet.model_state(backend),
                     "max_model_len": backend.max_model_len or route.max_model_len})
    return web.json_response({"object": "list", "data": data})


async def route_request(request: web.Request) -> web.StreamResponse:
    fleet = request.app[FLEET_KEY]
    measured = request.app[METRICS_KEY]
    started = time.perf_counter()
    body = await request.read()
    try:
        payload = json.loads(body) if body else {}
    except ValueError:
        return error_response(400, "the request body is not JSON")
    model = payload.get("model") if isinstance(payload, dict) else None
    route = fleet.table.lookup(model)
    if route is None:
        measured.requests.labels(model=str(model)[:64], status="404").inc()
        known = ", ".join(fleet.table.known())
        return error_response(404, f"the model {model!r} does not exist here; known models: {known}",
                              code="model_not_found")
    if model != route.served:
        payload["model"] = route.served
        body = json.dumps(payload).encode()
    backend = fleet.backends[route.name]
    try:
        await fleet.acquire(backend)
    except GatewayError as exc:
        measured.requests.labels(model=route.name, status=str(exc.status)).inc()
        return error_response(exc.status, exc.message, exc.kind, retry_after_s=exc.retry_after_s)
    measured.in_flight.labels(model=route.name).inc()
    status = "499"  # nginx's "client closed request": the client went away before the answer ended
    try:
        response = await forward(request, backend, body)
        status = str(response.status)
    finally:
        if status == "499" and STREAM_RELAYED in request:
            status = str(request[STREAM_RELAYED])
        measured.in_flight.labels(model=route.name).dec()
        fleet.release(backend)
        measured.requests.labels(model=route.name, status=status).inc()
        log = request.app[LOG_KEY]
        log(f"{request.method} {request.path} {model} -> {route.name} {status} "  # type: ignore[operator]
            f"{(time.perf_counter() - started) * 1000:.1f} ms")
    return response


async def forward(request: web.Request, backend: Backend, body: bytes) -> web.StreamResponse:
    """Send the request upstream; stream the answer back (SSE chunk by chunk); 502 when the upstream dies."""
    session: ClientSession = request.app[FLEET_KEY].http
    headers = forwarded_headers(request.headers)
    if backend.api_key:
        headers["Authorization"] = f"Bearer {backend.api_key}"
    url = f"{backend.base_url}{request.path_qs}"
    try:
        upstream = await session.request(request.method, url, data=body, headers=headers)
    except (ClientError, OSError) as exc:
        return error_response(502, f"the server of {backend.route.name} did not answer: {exc}",
                              "upstream_error")
    try:
        if upstream.content_type != "text/event-stream":
            try:
                data = await upstream.read()
            except (ClientError, OSError) as exc:
                return error_response(502, f"the server of {backend.route.name} failed mid-response: {exc}",
                                      "upstream_error")
            return web.Response(status=upstream.status, body=data,
                                headers=forwarded_headers(upstream.headers))
        return await _stream(request, upstream, backend)
    finally:
        upstream.release()


async def _stream(request: web.Request, upstream: Any, backend: Backend) -> web.StreamResponse:
    response = web.StreamResponse(status=upstream.status, headers=forwarded_headers(upstream.headers))
    await response.prepare(request)
    try:
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
            if chunk.rstrip().endswith(b"data: [DONE]"):
                request[STREAM_RELAYED] = upstream.status
    except asyncio.CancelledError:
        upstream.close()  # the client went away (aiohttp cancels the handler): vLLM sees it and aborts
        raise
    except (ClientError, OSError) as exc:
        if request.transport is None or request.transport.is_closing():
            upstream.close()  # the client went away: drop the upstream connection, vLLM aborts the request
            raise
        event = {"error": {"message": f"the server of {backend.route.name} failed mid-stream: {exc}",
                           "type": "upstream_error", "param": None, "code": "502"}}
        await response.write(f"data: {json.dumps(event)}\n\n".encode())
    await response.write_eof()
    return response


def make_app(fleet: Fleet, metrics_: Metrics, api_key: str | None, log: Any) -> web.Application:
    app = web.Application(middlewares=[authorize], client_max_size=64 << 20)
    app[FLEET_KEY] = fleet
    app[METRICS_KEY] = metrics_
    app[API_KEY_KEY] = api_key or ""
    app[LOG_KEY] = log
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/models", list_models)
    for path in ROUTED_PATHS:
        app.router.add_post(path, route_request)

    async def open_session(app: web.Application) -> None:
        # Keep-alive connections to the servers, no total timeout (generations may take minutes); the
        # bodies are passed on as they come (no decompression).
        fleet.http = ClientSession(connector=TCPConnector(limit=0, ttl_dns_cache=None),
                                   timeout=ClientTimeout(total=None, sock_connect=10), auto_decompress=False)

    async def close_session(app: web.Application) -> None:
        await fleet.http.close()

    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    return app
