"""The gateway's /metrics, in Prometheus' text format (prometheus-client, a registry of its own): requests by
model and status, requests in flight and waiting, cold starts and their duration, evictions, sleeps and
wakes, and the state of each model.

Every label value is bounded: a model is a route's name, or UNKNOWN_MODEL for every name the gateway does
not serve (a client sending many junk names must not grow the exposition or the memory without end)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from vllm_launcher.gateway.backends import Fleet

STATES = ("stopped", "starting", "running", "sleeping", "stopping", "failed")
UNKNOWN_MODEL = "(unknown)"


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # no *_created series: one line per counter, as vLLM's own /metrics
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("vllm_launch_gateway_requests", "Requests by model and HTTP status (model "
                                f"{UNKNOWN_MODEL!r}: a name the gateway does not serve).",
                                ["model", "status"], registry=r)
        self.in_flight = Gauge("vllm_launch_gateway_in_flight", "Requests being served, by model.", ["model"],
                               registry=r)
        self.waiting = Gauge("vllm_launch_gateway_waiting", "Requests waiting for a model's server to start "
                             "or finish stopping.", ["model"], registry=r)
        self.cold_starts = Counter("vllm_launch_gateway_cold_starts", "Servers started on demand.", ["model"],
                                   registry=r)
        self.cold_start_seconds = Histogram(
            "vllm_launch_gateway_cold_start_seconds", "From the first request to a ready server.", ["model"],
            registry=r, buckets=(1, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 1800))
        self.evictions = Counter("vllm_launch_gateway_evictions", "Servers stopped to make room.", ["model"],
                                 registry=r)
        self.sleeps = Counter("vllm_launch_gateway_sleeps", "Servers put to sleep.", ["model"], registry=r)
        self.wakes = Counter("vllm_launch_gateway_wakes", "Servers woken.", ["model"], registry=r)
        self.state = Gauge("vllm_launch_gateway_model_state", "1 for the state each model is in.",
                           ["model", "state"], registry=r)

    def render(self, fleet: Fleet) -> tuple[bytes, str]:
        for name, backend in fleet.backends.items():
            self.waiting.labels(model=name).set(backend.waiting)
            for state in STATES:
                self.state.labels(model=name, state=state).set(1 if backend.state == state else 0)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
