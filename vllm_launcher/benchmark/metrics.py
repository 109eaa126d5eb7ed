"""The figures of a benchmark run, with vLLM's definitions and result keys (`vllm.benchmarks.serve`).

A request's record carries what vLLM's `RequestFuncOutput` carries (start, TTFT, the inter-token gaps,
latency, prompt and output lengths); `figures` turns the records of one run into vLLM's result dict:
`completed`, `failed`, `request_throughput`, `output_throughput`, `total_token_throughput`,
`request_goodput`, `mean_/median_/std_/p99_` + `ttft_ms`, `tpot_ms`, `itl_ms`, `e2el_ms`. Where vLLM is
asked (`bench --vllm-metrics`) and importable, its own `calculate_metrics` computes them (`metrics_by` says
which did). By default the stdlib computation here does: it follows vLLM's line by line (numpy's
linear-interpolation percentiles included), a test holds the two together, and importing vLLM for a few
averages costs seconds (14 s of CPU on a 2-core machine).
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass, field
from typing import Any

from vllm_launcher.base.errors import ConfigError

PERCENTILES = (50.0, 90.0, 99.0)
SLO_KEYS = ("ttft", "tpot", "itl", "e2el")
VLLM_SLO_KEYS = ("ttft", "tpot", "e2el")  # vLLM's --goodput knows these; itl is ours (see meets_slo)
MAX_SLO_MS = 86_400_000.0
METRIC_NAMES = ("ttft", "tpot", "itl", "e2el")
OURS = "vllm_launcher.benchmark.metrics"
VLLMS = "vllm.benchmarks.serve.calculate_metrics"


@dataclass
class RequestRecord:
    """One request as the client saw it (seconds, perf_counter clock), like vLLM's RequestFuncOutput."""

    success: bool = False
    error: str = ""
    prompt_len: int = 0
    output_tokens: int = 0
    ttft: float = 0.0
    itl: list[float] = field(default_factory=list)
    latency: float = 0.0
    start_time: float = 0.0
    generated_text: str = ""
    session: int | None = None  # agent workload: which conversation, which turn (1-based)
    turn: int | None = None


def parse_slo(text: str | None) -> dict[str, float]:
    """`ttft:500,tpot:50` -> {"ttft": 500.0, "tpot": 50.0} (milliseconds). Raises ConfigError naming the
    bad part and what is valid."""
    if text is None:
        return {}
    slo: dict[str, float] = {}
    for part in text.split(","):
        key, sep, raw = part.strip().partition(":")
        key = key.strip().lower()
        if not sep or not key:
            raise ConfigError(
                f"expected KEY:MS pairs such as ttft:500,tpot:50, not {part.strip()!r}", source="--slo"
            )
        if key not in SLO_KEYS:
            raise ConfigError(f"unknown SLO key {key!r}: use {', '.join(SLO_KEYS)}", source="--slo")
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{key}: expected milliseconds, not {raw.strip()!r}", source="--slo") from None
        if not math.isfinite(value) or value <= 0 or value > MAX_SLO_MS:
            raise ConfigError(
                f"{key}: must be more than 0 and at most {MAX_SLO_MS:g} ms, not {raw.strip()}", source="--slo"
            )
        if key in slo:
            raise ConfigError(f"{key} is given twice", source="--slo")
        slo[key] = value
    return slo


def tpot_s(record: RequestRecord) -> float:
    """vLLM's TPOT of one request: (latency - TTFT) / (output tokens - 1); 0 with one token or none."""
    if record.output_tokens > 1:
        return (record.latency - record.ttft) / (record.output_tokens - 1)
    return 0.0


def meets_slo(record: RequestRecord, slo: dict[str, float]) -> bool:
    """vLLM's goodput test of one successful request (every SLO at or above the request's value); `itl`
    (not in vLLM) holds when the request's longest gap between tokens is within it."""
    values = {
        "ttft": record.ttft,
        "tpot": tpot_s(record),
        "e2el": record.latency,
        "itl": max(record.itl, default=0.0),
    }
    return all(values[key] <= limit_ms / 1000.0 for key, limit_ms in slo.items())


def percentile(values: list[float], p: float) -> float:
    """numpy.percentile's default (linear interpolation between closest ranks); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values) if values else 0.0


def _std(values: list[float]) -> float:
    if not values:
        return 0.0
    mean = _mean(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))


def _p_word(p: float) -> str:
    return str(int(p)) if int(p) == p else str(p)


def _distribution(name: str, values_s: list[float], result: dict[str, Any]) -> None:
    result[f"mean_{name}_ms"] = _mean(values_s) * 1000
    result[f"median_{name}_ms"] = percentile(values_s, 50) * 1000
    result[f"std_{name}_ms"] = _std(values_s) * 1000
    for p in PERCENTILES:
        result[f"p{_p_word(p)}_{name}_ms"] = percentile(values_s, p) * 1000


def own_figures(records: list[RequestRecord], duration_s: float, slo: dict[str, float]) -> dict[str, Any]:
    """calculate_metrics of vllm.benchmarks.serve, in the stdlib (the keys its `benchmark` returns)."""
    done = [r for r in records if r.success]
    output_lens = [r.output_tokens or 1 for r in done]  # vLLM: 1 when the server sent no count
    total_input = sum(r.prompt_len for r in done)
    total_output = sum(output_lens)
    tpots = [tpot_s(r) for r in done if (r.output_tokens or 1) > 1]
    good = sum(1 for r in done if meets_slo(r, slo)) if slo else 0
    result: dict[str, Any] = {
        "duration": duration_s,
        "completed": len(done),
        "failed": len(records) - len(done),
        "total_input_tokens": total_input,
        "total_output_tokens": total_output,
        "request_throughput": len(done) / duration_s,
        "request_goodput": good / duration_s if slo else None,
        "output_throughput": total_output / duration_s,
        "total_token_throughput": (total_input + total_output) / duration_s,
    }
    _distribution("ttft", [r.ttft for r in done], result)
    _distribution("tpot", tpots, result)
    _distribution("itl", [gap for r in done for gap in r.itl], result)
    _distribution("e2el", [r.latency for r in done], result)
    return result


def vllm_figures(records: list[RequestRecord], duration_s: float, slo: dict[str, float]) -> dict[str, Any]:
    """The same figures from vLLM's own calculate_metrics (raises ImportError where vLLM is missing)."""
    with contextlib.redirect_stderr(io.StringIO()):  # its import chatters (Triton, torch) on stderr
        from vllm.benchmarks.lib.endpoint_request_func import (
            RequestFuncOutput,
        )
        from vllm.benchmarks.serve import calculate_metrics

    outputs = [
        RequestFuncOutput(
            generated_text=r.generated_text,
            success=r.success,
            latency=r.latency,
            output_tokens=r.output_tokens,
            ttft=r.ttft,
            itl=list(r.itl),
            prompt_len=r.prompt_len,
            error=r.error,
            start_time=r.start_time,
        )
        for r in records
    ]
    goodput = {k: v for k, v in slo.items() if k in VLLM_SLO_KEYS}
    with contextlib.redirect_stdout(io.StringIO()):  # it prints tips and errors; our stdout may be --json
        metrics, output_lens = calculate_metrics(
            input_requests=[],
            outputs=outputs,
            dur_s=duration_s,
            tokenizer=None,
            selected_percentiles=list(PERCENTILES),
            goodput_config_dict=goodput,
        )
    result: dict[str, Any] = {
        "duration": duration_s,
        "completed": metrics.completed,
        "failed": metrics.failed,
        "total_input_tokens": metrics.total_input,
        "total_output_tokens": metrics.total_output,
        "request_throughput": metrics.request_throughput,
        "request_goodput": metrics.request_goodput if slo else None,
        "output_throughput": metrics.output_throughput,
        "total_token_throughput": metrics.total_token_throughput,
    }
    if slo and "itl" in slo:  # vLLM's goodput has no itl: count it here, with the same rule for the rest
        result["request_goodput"] = sum(1 for r in records if r.success and meets_slo(r, slo)) / duration_s
    for name in METRIC_NAMES:
        result[f"mean_{name}_ms"] = float(getattr(metrics, f"mean_{name}_ms"))
        result[f"median_{name}_ms"] = float(getattr(metrics, f"median_{name}_ms"))
        result[f"std_{name}_ms"] = float(getattr(metrics, f"std_{name}_ms"))
        for p, value in getattr(metrics, f"percentiles_{name}_ms"):
            result[f"p{_p_word(p)}_{name}_ms"] = float(value)
    del output_lens
    return result


def figures(
    records: list[RequestRecord], duration_s: float, slo: dict[str, float], prefer_vllm: bool = False
) -> dict[str, Any]:
    """vLLM's result dict for RECORDS over DURATION_S, by own_figures, or with PREFER_VLLM by vLLM's
    calculate_metrics where it imports; `metrics_by` names which."""
    duration_s = max(duration_s, 1e-9)
    if prefer_vllm:
        try:
            result = vllm_figures(records, duration_s, slo)
            result["metrics_by"] = VLLMS
            return result
        except Exception:
            pass
    result = own_figures(records, duration_s, slo)
    result["metrics_by"] = OURS
    return result


def ttft_by_turn(records: list[RequestRecord]) -> list[dict[str, Any]]:
    """The agent workload's TTFT per turn index: turn 1 is cold, later turns find the prefix cached."""
    turns = sorted({r.turn for r in records if r.turn is not None})
    rows = []
    for turn in turns:
        values = [r.ttft for r in records if r.turn == turn and r.success]
        rows.append(
            {
                "turn": turn,
                "completed": len(values),
                "mean_ttft_ms": _mean(values) * 1000,
                "median_ttft_ms": percentile(values, 50) * 1000,
                "p99_ttft_ms": percentile(values, 99) * 1000,
                "mean_prompt_tokens": _mean(
                    [float(r.prompt_len) for r in records if r.turn == turn and r.success]
                ),
            }
        )
    return rows
