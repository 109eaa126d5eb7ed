"""What the gateway forwards and how each protocol says things: the routes vLLM serves (by path: where the
`model` is, which protocol's error shape answers), the routes it never forwards, the error bodies and
stream error events of OpenAI's and Anthropic's APIs, multipart's `model` field, and the bounded memory
of which server made a response id. Pure: no I/O, no aiohttp.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from dataclasses import dataclass

OPENAI, ANTHROPIC, RESPONSES = "openai", "anthropic", "responses"
JSON, MULTIPART = "json", "multipart"


@dataclass(frozen=True)
class Endpoint:
    """A POST route routed by the request's model: where the model is, and the protocol's shapes."""

    body: str = JSON  # JSON: the body's `model`; MULTIPART: the `model` form field
    protocol: str = OPENAI


# vLLM 0.32's routes (vllm/entrypoints/openai, /anthropic, /pooling, /serve): routed by the model.
ROUTED: dict[str, Endpoint] = {
    "/v1/chat/completions": Endpoint(),
    "/v1/completions": Endpoint(),
    "/v1/responses": Endpoint(protocol=RESPONSES),
    "/v1/embeddings": Endpoint(),
    "/v1/audio/transcriptions": Endpoint(MULTIPART),
    "/v1/audio/translations": Endpoint(MULTIPART),
    "/v1/messages": Endpoint(protocol=ANTHROPIC),
    "/v1/messages/count_tokens": Endpoint(protocol=ANTHROPIC),
    **{path: Endpoint() for path in ("/rerank", "/v1/rerank", "/v2/rerank", "/score", "/v1/score",
                                      "/pooling", "/classify", "/v2/embed", "/tokenize", "/detokenize")},
}
# The Responses API's own routes: no model in them, so they go to the server that made the id.
RESPONSE_ID = re.compile(r"/v1/responses/(?P<id>[A-Za-z0-9_.:-]{1,256})(?P<cancel>/cancel)?")
# vLLM's dev-mode and unauthenticated admin routes: never forwarded (a client could put a server to sleep,
# run code in its workers or swap its weights). Named here so that the refusal says why.
ADMIN_PATHS = frozenset({
    "/sleep", "/wake_up", "/is_sleeping", "/collective_rpc", "/reset_prefix_cache", "/reset_mm_cache",
    "/reset_encoder_cache", "/start_profile", "/stop_profile", "/update_weights",
    "/init_weight_transfer_engine", "/update_weights_from_disk", "/pause", "/resume", "/is_paused",
    "/scale_elastic_ep", "/is_scaling_elastic_ep", "/load", "/server_info", "/v1/load_lora_adapter",
    "/v1/unload_lora_adapter", "/invocations", "/get_world_size"})


def protocol_of(path: str) -> str:
    """Whose error shape answers a request for PATH: Anthropic's for /v1/messages*, else OpenAI's."""
    return ANTHROPIC if path == "/v1/messages" or path.startswith("/v1/messages/") else OPENAI


# Anthropic's error types by HTTP status (docs.anthropic.com, "Errors").
ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
                   429: "rate_limit_error", 500: "api_error", 502: "api_error", 503: "overloaded_error",
                   504: "api_error", 529: "overloaded_error"}
OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
                429: "rate_limit_error", 502: "upstream_error"}


def error_body(protocol: str, status: int, message: str, kind: str | None = None,
               code: str | None = None) -> dict:
    """The error body of PROTOCOL: OpenAI's {"error": {message, type, param, code}} or Anthropic's
    {"type": "error", "error": {type, message}}. KIND is the OpenAI type; Anthropic's follows the status."""
    if protocol == ANTHROPIC:
        fallback = "api_error" if status >= 500 else "invalid_request_error"
        return {"type": "error", "error": {"type": ANTHROPIC_TYPES.get(status, fallback), "message": message}}
    fallback = "server_error" if status >= 500 else "invalid_request_error"
    openai_kind = kind or OPENAI_TYPES.get(status, fallback)
    return {"error": {"message": message, "type": openai_kind, "param": None, "code": code or str(status)}}


def stream_error_event(protocol: str, message: str) -> bytes:
    """The last event of a stream the gateway has to end (the upstream died, the gateway stops), in the
    stream's own format: Anthropic's `event: error`, the Responses API's `error` event, or chat's `data:`
    error object."""
    event: dict[str, object]
    if protocol == ANTHROPIC:
        event = {"type": "error", "error": {"type": "api_error", "message": message}}
        return f"event: error\ndata: {json.dumps(event)}\n\n".encode()
    if protocol == RESPONSES:
        event = {"type": "error", "code": "upstream_error", "message": message, "param": None}
        return f"event: error\ndata: {json.dumps(event)}\n\n".encode()
    event = {"error": {"message": message, "type": "upstream_error", "param": None, "code": "502"}}
    return f"data: {json.dumps(event)}\n\n".encode()


# ------------------------------------------------------------------------------------------ multipart


def _boundary(content_type: str) -> bytes | None:
    found = re.search(r'boundary="?([^";]+)"?', content_type)
    return found.group(1).encode() if found else None


def _model_part(body: bytes, boundary: bytes) -> tuple[int, int] | None:
    """(start, end) of the `model` field's value in a multipart BODY, or None."""
    delimiter = b"--" + boundary
    position = body.find(delimiter)
    while position >= 0:
        head_start = position + len(delimiter)
        if body[head_start:head_start + 2] == b"--":
            return None  # the closing delimiter
        head_end = body.find(b"\r\n\r\n", head_start)
        if head_end < 0:
            return None
        following = body.find(b"\r\n" + delimiter, head_end + 4)
        if following < 0:
            return None
        headers = body[head_start:head_end].decode("latin-1").lower()
        if re.search(r'content-disposition:\s*form-data;[^\r\n]*\bname="model"', headers):
            return head_end + 4, following
        position = following + 2
    return None


def multipart_model(body: bytes, content_type: str) -> str | None:
    """The `model` form field of a multipart/form-data BODY (audio transcriptions), or None."""
    boundary = _boundary(content_type)
    span = _model_part(body, boundary) if boundary else None
    return body[span[0]:span[1]].decode("utf-8", "replace") if span else None


def with_multipart_model(body: bytes, content_type: str, model: str) -> bytes:
    """BODY with its `model` field's value replaced by MODEL; every other byte unchanged."""
    boundary = _boundary(content_type)
    span = _model_part(body, boundary) if boundary else None
    if span is None:
        return body
    return body[:span[0]] + model.encode() + body[span[1]:]


# ------------------------------------------------------------------------------------- response ids

RESPONSE_ID_IN_STREAM = re.compile(rb'"type"\s*:\s*"response\.created".*?"id"\s*:\s*"([^"]{1,256})"', re.S)
# How much of a stream's start is searched for its response id: response.created is its first event.
RESPONSE_ID_SCAN_BYTES = 64 << 10


def response_id_of(body: bytes) -> str | None:
    """The id of a Responses API answer: a JSON body's `id`, or a stream's `response.created` event's."""
    text = body.lstrip()
    if text.startswith(b"{"):
        try:
            data = json.loads(text)
        except ValueError:
            return None
        found = data.get("id") if isinstance(data, dict) else None
        return found if isinstance(found, str) and RESPONSE_ID.fullmatch(f"/v1/responses/{found}") else None
    match = RESPONSE_ID_IN_STREAM.search(body)
    if match:
        found = match.group(1).decode("utf-8", "replace")
        return found if RESPONSE_ID.fullmatch(f"/v1/responses/{found}") else None
    return None


class ResponseOwners:
    """Which route made each response id, for the last MAX ids (the oldest are forgotten first): the
    memory stays bounded however many responses pass."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._owners: OrderedDict[str, str] = OrderedDict()

    def remember(self, response_id: str, route: str) -> None:
        self._owners[response_id] = route
        self._owners.move_to_end(response_id)
        while len(self._owners) > self.limit:
            self._owners.popitem(last=False)

    def owner(self, response_id: str) -> str | None:
        return self._owners.get(response_id)

    def forget(self, response_id: str) -> None:
        self._owners.pop(response_id, None)

    def __len__(self) -> int:
        return len(self._owners)
