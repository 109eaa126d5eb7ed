"""The figures of a run (vllm_launcher.benchmark.metrics): vLLM's definitions by hand, our stdlib code
against vLLM's own calculate_metrics on the same records, SLO parsing, the server's /metrics."""

from __future__ import annotations

import math
import random

import numpy
import pytest

from vllm_launcher.base.errors import ConfigError
from vllm_launcher.benchmark import client, metrics, server_metrics
from vllm_launcher.benchmark.metrics import RequestRecord


def record(
    ttft: float, itl: list[float], tokens: int, prompt: int = 10, start: float = 0.0, turn: int | None = None
) -> RequestRecord:
    return RequestRecord(
        success=True,
        prompt_len=prompt,
        output_tokens=tokens,
        ttft=ttft,
        itl=itl,
        latency=ttft + sum(itl),
        start_time=start,
        turn=turn,
        session=0 if turn else None,
    )


def test_vllms_definitions_by_hand():
    records = [
        record(0.1, [0.02, 0.02, 0.02], 4),
        record(0.3, [0.04], 2, prompt=30),
        RequestRecord(success=False, error="HTTP 500: boom"),
    ]
    result = metrics.own_figures(records, 2.0, {"ttft": 200, "tpot": 50})
    assert result["completed"] == 2 and result["failed"] == 1
    assert result["total_input_tokens"] == 40 and result["total_output_tokens"] == 6
    assert result["request_throughput"] == pytest.approx(1.0)
    assert result["output_throughput"] == pytest.approx(3.0)
    assert result["total_token_throughput"] == pytest.approx(23.0)
    assert result["request_goodput"] == pytest.approx(0.5)  # the second misses ttft 200 ms
    assert result["mean_ttft_ms"] == pytest.approx(200.0) and result["median_ttft_ms"] == pytest.approx(200.0)
    # TPOT = (latency - ttft) / (tokens - 1): 20 ms and 40 ms
    assert result["mean_tpot_ms"] == pytest.approx(30.0)
    assert result["mean_itl_ms"] == pytest.approx((0.02 * 3 + 0.04) / 4 * 1000)
    assert result["p99_itl_ms"] == pytest.approx(numpy.percentile([20, 20, 20, 40], 99))
    assert result["mean_e2el_ms"] == pytest.approx((160 + 340) / 2)


def test_one_token_answers_have_no_tpot_and_count_as_meeting_it():
    records = [record(0.1, [], 1), record(0.1, [0.03], 2)]
    result = metrics.own_figures(records, 1.0, {"tpot": 10})
    assert result["mean_tpot_ms"] == pytest.approx(30.0)  # only the two-token answer has a TPOT
    assert result["request_goodput"] == pytest.approx(1.0)  # vLLM: tpot 0 for one token, so it is good


def test_percentiles_are_numpys():
    rng = random.Random(3)
    for size in (1, 2, 7, 100):
        values = [rng.random() for _ in range(size)]
        for p in (0, 1, 50, 90, 99, 99.9, 100):
            assert metrics.percentile(values, p) == pytest.approx(float(numpy.percentile(values, p)))
    assert metrics.percentile([], 99) == 0.0


@pytest.mark.vllm  # vLLM's calculate_metrics: imports vLLM (14 CPU-seconds here)
@pytest.mark.parametrize(
    "slo", [{}, {"ttft": 150.0}, {"ttft": 150.0, "tpot": 25.0, "e2el": 900.0}, {"itl": 45.0, "ttft": 300.0}]
)
def test_our_figures_are_vllms_calculate_metrics(slo):
    rng = random.Random(len(slo))
    records = []
    for i in range(200):
        if rng.random() < 0.05:
            records.append(RequestRecord(success=False, error="dropped"))
            continue
        tokens = rng.randint(1, 40)
        records.append(
            record(
                rng.uniform(0.05, 0.4),
                [rng.uniform(0.01, 0.06) for _ in range(tokens - 1)],
                tokens,
                prompt=rng.randint(1, 500),
                start=i * 0.01,
            )
        )
    ours = metrics.own_figures(records, 12.5, slo)
    theirs = metrics.vllm_figures(records, 12.5, slo)  # vLLM is installed here: never skipped
    assert set(ours) == set(theirs)
    for key, value in ours.items():
        if value is None:
            assert theirs[key] is None, key
        else:
            assert theirs[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key
    assert metrics.figures(records, 12.5, slo, prefer_vllm=True)["metrics_by"] == metrics.VLLMS
    assert metrics.figures(records, 12.5, slo)["metrics_by"] == metrics.OURS  # bench without --vllm-metrics


def test_ttft_by_turn():
    records = [record(0.5, [0.01], 2, turn=1), record(0.7, [0.01], 2, turn=1), record(0.1, [0.01], 2, turn=2)]
    rows = metrics.ttft_by_turn(records)
    assert [r["turn"] for r in rows] == [1, 2]
    assert rows[0]["mean_ttft_ms"] == pytest.approx(600.0) and rows[1]["completed"] == 1


@pytest.mark.parametrize(
    "text,expected",
    [
        ("ttft:500", {"ttft": 500.0}),
        ("TTFT:500, tpot:50.5", {"ttft": 500.0, "tpot": 50.5}),
        ("ttft:1,tpot:2,itl:3,e2el:4", {"ttft": 1.0, "tpot": 2.0, "itl": 3.0, "e2el": 4.0}),
    ],
)
def test_parse_slo(text, expected):
    assert metrics.parse_slo(text) == expected


@pytest.mark.parametrize(
    "text,words",
    [
        ("latency:5", "unknown SLO key 'latency': use ttft, tpot, itl, e2el"),
        ("ttft", "expected KEY:MS"),
        ("ttft:abc", "expected milliseconds"),
        ("ttft:0", "more than 0"),
        ("ttft:-3", "more than 0"),
        ("ttft:nan", "more than 0"),
        ("ttft:1,ttft:2", "given twice"),
        ("", "expected KEY:MS"),
    ],
)
def test_bad_slo(text, words):
    with pytest.raises(ConfigError) as caught:
        metrics.parse_slo(text)
    assert words in str(caught.value) and str(caught.value).startswith("--slo: ")


METRICS_BEFORE = """# HELP vllm:prefix_cache_queries Prefix cache queries
vllm:prefix_cache_queries_total{engine="0",model_name="demo"} 100.0
vllm:prefix_cache_hits_total{engine="0",model_name="demo"} 10.0
vllm:num_preemptions_total{engine="0",model_name="demo"} 1.0
vllm:kv_cache_usage_perc{engine="0",model_name="demo"} 0.0
"""
METRICS_AFTER = """vllm:prefix_cache_queries_total{engine="0",model_name="demo"} 1100.0
vllm:prefix_cache_hits_total{engine="0",model_name="demo"} 760.0
vllm:num_preemptions_total{engine="0",model_name="demo"} 3.0
vllm:kv_cache_usage_perc{engine="0",model_name="demo"} 0.125
vllm:num_requests_running{engine="0",model_name="demo"} 0.0
garbage line here
"""


def test_server_metrics_delta():
    change = server_metrics.delta(server_metrics.parse(METRICS_BEFORE), server_metrics.parse(METRICS_AFTER))
    assert change["prefix_cache_queries"] == 1000 and change["prefix_cache_hit_rate"] == pytest.approx(0.75)
    assert change["preemptions"] == 2 and change["kv_cache_usage_after"] == pytest.approx(0.125)
    unknown = server_metrics.delta(None, server_metrics.parse("no metrics here"))
    assert unknown["prefix_cache_hit_rate"] is None and unknown["preemptions"] is None


def test_poisson_arrivals():
    assert client.arrival_delays(5, math.inf, random.Random(0)) == [0.0] * 5
    times = client.arrival_delays(400, 8.0, random.Random(0))
    assert times == sorted(times) and times[-1] == pytest.approx(400 / 8.0)
    gaps = [b - a for a, b in zip([0.0, *times[:-1]], times, strict=True)]
    assert 0.5 < numpy.std(gaps) / numpy.mean(gaps) < 1.5  # exponential gaps: std close to the mean
