"""The gateway's HTTP side (aiohttp): every protocol vLLM serves, routed by the request's `model`,
forwarded faithfully, errors in the protocol's own shape (gateway/protocols.py has the table).

Faithful: the upstream's status, headers (minus hop-by-hop ones) and body pass unchanged; server-sent
events pass chunk by chunk as they arrive; the query string passes on (Claude Code's `?beta=true`), and so
do headers such as `anthropic-version`; a client that goes away closes the upstream request (vLLM then
aborts it); an upstream that dies is a 502 (mid-stream: an error event in the stream's format, the
status is already sent). The only change to a request: `model` is rewritten to the name the server
serves when the client used a preset name or an alias, and the client's key is replaced by the preset's
upstream key (if any). vLLM's dev-mode and admin routes are never forwarded.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

from vllm_launcher.gateway import protocols
from vllm_launcher.gateway.backends import Backend, Fleet, GatewayError
from vllm_launcher.gateway.metrics import UNKNOWN_MODEL, Metrics

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "trailers", "transfer-encoding", "upgrade", "content-length", "host",
                        "authorization", "x-api-key"})
MAX_BODY_BYTES = 64 << 20
FLEET_KEY = web.AppKey("fleet", Fleet)
METRICS_KEY = web.AppKey("metrics", Metrics)
API_KEY_KEY = web.AppKey("api_key", str)
LOG_KEY = web.AppKey("log", object)
OWNERS_KEY = web.AppKey("owners", protocols.ResponseOwners)
STREAMS_KEY: web.AppKey[set[OpenStream]] = web.AppKey("streams")
# Set on a request once a streamed answer's last event is relayed: a client that hangs up then (the SDKs
# close on it) got the whole answer, so it counts as the upstream's status, not 499.
STREAM_RELAYED = "vllm_launch_stream_relayed"
STATUS = "vllm_launch_status"  # what the request's log line and metric say, when not the response's status
MODEL = "vllm_launch_model"  # (the model the client asked for, the route's name) once routed
QUIET_PATHS = frozenset({"/health", "/metrics"})  # polled by monitors: no line per request
OPEN_PATHS = frozenset({"/", "/health", "/metrics"})  # no key needed, as vLLM's /health and /metrics
# The last event of each protocol's stream: relayed means the answer was whole.
LAST_EVENTS = (b"data: [DONE]", b'"type":"message_stop"', b'"type": "message_stop"',
               b'"type":"response.completed"', b'"type": "response.completed"')


class StreamCut(Exception):
    """Raised into a stream's read by the gateway's shutdown once the drain time is over."""


@dataclass(eq=False)
class OpenStream:
    """A stream being relayed, as the shutdown sees it."""

    upstream: Any
    cut: bool = False


def error_response(status: int, message: str, kind: str | None = None, code: str | None = None,
                   retry_after_s: int | None = None, protocol: str = protocols.OPENAI,
                   headers: dict[str, str] | None = None) -> web.Response:
    """The gateway's own answer in PROTOCOL's error shape (OpenAI's unless Anthropic's)."""
    extra = dict(headers or {})
    if retry_after_s is not None:
        extra["Retry-After"] = str(retry_after_s)
    return web.json_response(protocols.error_body(protocol, status, message, kind, code), status=status,
                             headers=extra or None)


def forwarded_headers(headers: Any) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}


def _printable(value: object, limit: int = 80) -> str:
    """A client's string as a log line may show it: one line, bounded, escapes for the rest."""
    text = value if isinstance(value, str) else repr(value)
    shown = text if text.isprintable() else repr(text)
    return shown if len(shown) <= limit else shown[:limit] + "..."


# ----------------------------------------------------------------------------------------- middleware


@web.middleware
async def observe(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every answer in the protocol's shape (aiohttp's own 404, 405 and 413 too), and one line per request
    on the gateway's terminal: method, path, the model asked for and the route, status, milliseconds."""
    started = time.perf_counter()
    protocol = protocols.protocol_of(request.path)
    status = "499"  # nginx's "client closed request": the client went away before the answer ended
    try:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = _shaped(exc, protocol)
        status = str(request.get(STATUS) or response.status)
        return response
    finally:
        if status == "499" and STREAM_RELAYED in request:
            status = str(request[STREAM_RELAYED])
        asked, route = request.get(MODEL, (None, None))
        if route is not None:
            request.app[METRICS_KEY].requests.labels(model=route, status=status).inc()
        if request.path not in QUIET_PATHS:
            routed = "" if route is None else f" {_printable(asked)} -> {route}" if asked is not None else (
                f" -> {route}")
            log = request.app[LOG_KEY]
            log(f"{request.method} {_printable(request.path, 200)}{routed} {status} "  # type: ignore[operator]
                f"{(time.perf_counter() - started) * 1000:.1f} ms")


def _shaped(exc: web.HTTPException, protocol: str) -> web.Response:
    if exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        return error_response(405, f"this route takes {allowed or 'another method'}", protocol=protocol,
                              headers={"Allow": allowed} if allowed else None)
    if exc.status == 413:
        return error_response(413, f"the request body is larger than {MAX_BODY_BYTES >> 20} MiB",
                              protocol=protocol)
    if exc.status == 404:
        return error_response(404, "no such route here: the gateway serves vLLM's OpenAI and Anthropic "
                              "routes (/v1/chat/completions, /v1/messages, /v1/responses, ...), /v1/models "
                              "and /health", code="not_found", protocol=protocol)
    return error_response(exc.status, exc.reason, protocol=protocol)


@web.middleware
async def authorize(request: web.Request, handler: Any) -> web.StreamResponse:
    """The gateway's own key (--api-key-env), as `Authorization: Bearer KEY` (OpenAI's SDK, Claude Code's
    ANTHROPIC_AUTH_TOKEN) or `x-api-key: KEY` (Anthropic's SDK), constant-time compared; /, /health and
    /metrics stay open."""
    key = request.app[API_KEY_KEY]
    if key and request.path not in OPEN_PATHS:
        bearer = request.headers.get("Authorization", "")
        given = bearer[7:] if bearer[:7].lower() == "bearer " else request.headers.get("x-api-key", "")
        if not hmac.compare_digest(given.encode(), key.encode()):
            return error_response(401, "missing or wrong API key (Authorization: Bearer KEY, or x-api-key)",
                                  "authentication_error", "invalid_api_key",
                                  protocol=protocols.protocol_of(request.path))
    return await handler(request)


# ------------------------------------------------------------------------------------------- handlers


async def root(request: web.Request) -> web.Response:
    """GET and HEAD /: clients (Claude Code) check that the base URL answers."""
    return web.json_response({"status": "ok", "service": "vllm-launch gateway"})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    text, content_type = request.app[METRICS_KEY].render(request.app[FLEET_KEY])
    return web.Response(body=text, headers={"Content-Type": content_type})


def _model_entry(fleet: Fleet, name: str) -> dict:
    route = fleet.table.by_name[name]
    backend = fleet.backends[route.name]
    context = backend.max_model_len or route.max_model_len
    # OpenAI's model object and Anthropic's (type, display_name, created_at) in one: both SDKs read it.
    return {"id": name, "object": "model", "type": "model", "display_name": name, "owned_by": "vllm-launch",
            "created": 0, "created_at": "1970-01-01T00:00:00Z", "root": route.served, "preset": route.name,
            "aliases": [other for other in route.names if other != name], "state": fleet.model_state(backend),
            "max_model_len": context, "context_length": context}


async def list_models(request: web.Request) -> web.Response:
    """Every routable name with its model's state, context length and other names (OpenAI's list shape,
    with Anthropic's paging fields)."""
    fleet = request.app[FLEET_KEY]
    data = [_model_entry(fleet, name) for name in fleet.table.by_name]
    return web.json_response({"object": "list", "data": data, "has_more": False,
                              "first_id": data[0]["id"] if data else None,
                              "last_id": data[-1]["id"] if data else None})


async def get_model(request: web.Request) -> web.Response:
    fleet = request.app[FLEET_KEY]
    name = request.match_info["model"]
    if name not in fleet.table.by_name:
        return error_response(404, _unknown_model(fleet, name), code="model_not_found",
                              protocol=protocols.ANTHROPIC if "anthropic-version" in request.headers
                              else protocols.OPENAI)
    return web.json_response(_model_entry(fleet, name))


async def refuse_admin(request: web.Request) -> web.Response:
    return error_response(403, f"{request.path} is one of vLLM's admin or dev-mode routes: the gateway never "
                          "forwards those", "permission_error", "forbidden")


def _unknown_model(fleet: Fleet, model: object) -> str:
    known = ", ".join(fleet.table.known())
    if model is None:
        return f"the request names no model; known models: {known}"
    shown = repr(model) if isinstance(model, str) and model.isprintable() and len(model) <= 200 else (
        _printable(model, 200))
    return f"the model {shown} does not exist here; known models: {known}"


async def route_request(request: web.Request) -> web.StreamResponse:
    """A POST routed by its model: JSON bodies' `model`, multipart forms' `model` field."""
    fleet = request.app[FLEET_KEY]
    endpoint = protocols.ROUTED[request.path]
    protocol = endpoint.protocol  # its errors' shape (the Responses API's are OpenAI's) and its streams'
    body = await request.read()
    if endpoint.body == protocols.MULTIPART:
        model: object = protocols.multipart_model(body, request.content_type + _params(request))
        payload = None
    else:
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return error_response(400, "the request body is not JSON", protocol=protocol)
        model = payload.get("model") if isinstance(payload, dict) else None
    route = fleet.table.lookup(model)
    if route is None:
        request[MODEL] = (model, UNKNOWN_MODEL)
        return error_response(404, _unknown_model(fleet, model), code="model_not_found", protocol=protocol)
    request[MODEL] = (model, route.name)
    if model != route.served:
        if payload is not None:
            payload["model"] = route.served
            body = json.dumps(payload).encode()
        else:
            body = protocols.with_multipart_model(body, request.content_type + _params(request), route.served)
    return await _through(request, fleet.backends[route.name], body, protocol)


def _params(request: web.Request) -> str:
    """The Content-Type's parameters (the multipart boundary), which aiohttp's content_type drops."""
    full = request.headers.get("Content-Type", "")
    return full[len(full.split(";", 1)[0]):]


async def by_response_id(request: web.Request) -> web.StreamResponse:
    """GET/DELETE /v1/responses/{id} and POST .../cancel: to the server that made the id."""
    fleet = request.app[FLEET_KEY]
    response_id = request.match_info["response_id"]
    owner = request.app[OWNERS_KEY].owner(response_id)
    if owner is None or owner not in fleet.backends:
        return error_response(404, f"no response {response_id!r} passed through this gateway (it remembers "
                              f"the last {request.app[OWNERS_KEY].limit} ids)", code="response_not_found")
    request[MODEL] = (None, owner)
    body = await request.read()
    answer = await _through(request, fleet.backends[owner], body, protocols.RESPONSES)
    if request.method == "DELETE" and 200 <= answer.status < 300:
        request.app[OWNERS_KEY].forget(response_id)
    return answer


async def _through(request: web.Request, backend: Backend, body: bytes, protocol: str) -> web.StreamResponse:
    """BACKEND acquired (started, woken, waited for) for the time of the forward."""
    fleet = request.app[FLEET_KEY]
    measured = request.app[METRICS_KEY]
    try:
        await fleet.acquire(backend)
    except GatewayError as exc:
        return error_response(exc.status, exc.message, exc.kind, retry_after_s=exc.retry_after_s,
                              protocol=protocol)
    name = backend.route.name
    measured.in_flight.labels(model=name).inc()
    try:
        return await forward(request, backend, body, protocol)
    finally:
        measured.in_flight.labels(model=name).dec()
        fleet.release(backend)


async def forward(request: web.Request, backend: Backend, body: bytes,
                  protocol: str = protocols.OPENAI) -> web.StreamResponse:
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
                              "upstream_error", protocol=protocol)
    try:
        if upstream.content_type != "text/event-stream":
            try:
                data = await upstream.read()
            except (ClientError, OSError) as exc:
                return error_response(502, f"the server of {backend.route.name} failed mid-response: {exc}",
                                      "upstream_error", protocol=protocol)
            if request.path == "/v1/responses" and upstream.status == 200:
                _remember_response(request, data, backend)
            return web.Response(status=upstream.status, body=data,
                                headers=forwarded_headers(upstream.headers))
        return await _stream(request, upstream, backend, protocol)
    finally:
        upstream.release()


def _remember_response(request: web.Request, data: bytes, backend: Backend) -> bool:
    found = protocols.response_id_of(data)
    if found:
        request.app[OWNERS_KEY].remember(found, backend.route.name)
    return found is not None


async def _stream(request: web.Request, upstream: Any, backend: Backend, protocol: str) -> web.StreamResponse:
    response = web.StreamResponse(status=upstream.status, headers=forwarded_headers(upstream.headers))
    await response.prepare(request)
    # A new response's id is in its first event: search the stream's start for it (bounded).
    scanning = request.path == "/v1/responses" and upstream.status == 200
    start = b""
    streams = request.app[STREAMS_KEY]
    this = OpenStream(upstream)
    streams.add(this)
    try:
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
            if scanning:
                start += chunk
                scanning = not _remember_response(request, start, backend) and (
                    len(start) < protocols.RESPONSE_ID_SCAN_BYTES)
            if any(event in chunk for event in LAST_EVENTS):
                request[STREAM_RELAYED] = upstream.status
    except asyncio.CancelledError:
        upstream.close()  # the client went away (aiohttp cancels the handler): vLLM sees it and aborts
        raise
    except StreamCut as exc:
        upstream.close()
        request[STATUS] = "cut"
        request.pop(STREAM_RELAYED, None)
        await response.write(protocols.stream_error_event(protocol, str(exc)))
    except (ClientError, OSError) as exc:
        if request.transport is None or request.transport.is_closing():
            upstream.close()  # the client went away: drop the upstream connection, vLLM aborts the request
            raise
        await response.write(protocols.stream_error_event(
            protocol, f"the server of {backend.route.name} failed mid-stream: {exc}"))
    finally:
        streams.discard(this)
    await response.write_eof()
    return response


async def drain(app: web.Application, drain_s: float, log: Any) -> None:
    """On shutdown: give the requests in flight up to DRAIN_S to end, then cut the streams still open
    (each gets an error event in its protocol's format and is logged as `cut`)."""
    fleet = app[FLEET_KEY]

    def busy() -> bool:
        return any(b.in_flight for b in fleet.backends.values()) or bool(app[STREAMS_KEY])

    if not busy():
        return
    log(f"waiting up to {drain_s:g} s for {sum(b.in_flight for b in fleet.backends.values())} request(s) "
        "in flight")
    deadline = time.monotonic() + drain_s
    while busy() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    streams: set[OpenStream] = app[STREAMS_KEY]
    open_streams = sorted(streams, key=id)
    for stream in open_streams:
        stream.cut = True
        stream.upstream.content.set_exception(StreamCut(
            f"the gateway is stopping: this stream was cut after a drain of {drain_s:g} s"))
    if open_streams:
        log(f"cutting {len(open_streams)} stream(s) still open after {drain_s:g} s")
        while app[STREAMS_KEY] and time.monotonic() < deadline + 5:
            await asyncio.sleep(0.02)


def make_app(fleet: Fleet, metrics_: Metrics, api_key: str | None, log: Any) -> web.Application:
    app = web.Application(middlewares=[observe, authorize], client_max_size=MAX_BODY_BYTES)
    app[FLEET_KEY] = fleet
    app[METRICS_KEY] = metrics_
    app[API_KEY_KEY] = api_key or ""
    app[LOG_KEY] = log
    app[OWNERS_KEY] = protocols.ResponseOwners()
    app[STREAMS_KEY] = set()
    app.router.add_get("/", root)  # and HEAD
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model:.+}", get_model)
    for path in protocols.ROUTED:
        app.router.add_post(path, route_request)
    app.router.add_get("/v1/responses/{response_id}", by_response_id)
    app.router.add_delete("/v1/responses/{response_id}", by_response_id)
    app.router.add_post("/v1/responses/{response_id}/cancel", by_response_id)
    for path in sorted(protocols.ADMIN_PATHS):
        app.router.add_route("*", path, refuse_admin)

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
