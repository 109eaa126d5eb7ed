"""`bench` and `tune`: measure a server under a workload; sweep the settings that decide speed, within the
memory fit, and keep the best.

A preset target runs on its server when one is up (`status` shows it ready), else on one started for the
run exactly as `up --detach` starts it (pre-flight, claim, background supervisor, on a free loopback port)
and stopped after, Ctrl-C included. Errors are ConfigError (exit 2) or LaunchError (exit 1).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vllm_launcher.base import output
from vllm_launcher.base.errors import ConfigError, LaunchError
from vllm_launcher.base.inputs import check_number
from vllm_launcher.base.output import Result
from vllm_launcher.machine import records

if TYPE_CHECKING:
    from vllm_launcher.benchmark.client import RunResult, Target
    from vllm_launcher.benchmark.workloads import Shape, Workload
    from vllm_launcher.preset.schema import ResolvedPreset

MAX_COUNT = 1_000_000
MAX_TOKENS = 10_000_000
MAX_CONCURRENCY = 100_000
MAX_LEVELS = 16
INTERRUPTED = 130


# ------------------------------------------------------------------------------------------ inputs


def _count(option: str, value: int | None, high: int = MAX_COUNT, low: int = 1) -> None:
    if value is not None and value < low:
        raise ConfigError(f"must be at least {low}, not {value}", source=option)
    check_number(option, value, low=low, high=high)


def parse_levels(text: str) -> list[int | None]:
    """`1,4,16` -> [1, 4, 16]; `inf` (or 0? no: refused) means no cap (None)."""
    levels: list[int | None] = []
    for part in str(text).split(","):
        part = part.strip().lower()
        if part in ("inf", "none", "unlimited"):
            levels.append(None)
            continue
        try:
            value = int(part)
        except ValueError:
            raise ConfigError(
                f"expected whole numbers such as 1,4,16 (or inf), not {part!r}", source="--concurrency"
            ) from None
        _count("--concurrency", value, MAX_CONCURRENCY)
        levels.append(value)
    if len(levels) > MAX_LEVELS:
        raise ConfigError(f"at most {MAX_LEVELS} levels", source="--concurrency")
    return levels


def parse_rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise ConfigError(
            f"expected requests per second (a number, or inf), not {text!r}", source="--request-rate"
        ) from None
    if math.isnan(rate) or rate <= 0:
        raise ConfigError(f"must be more than 0 (inf: all at once), not {text}", source="--request-rate")
    return rate


@dataclass
class WorkloadArgs:
    workload: str = "random"
    requests: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    sessions: int | None = None
    turns: int | None = None
    client_prompt_tokens: int | None = None
    tool_result_tokens: int | None = None
    prefix_tokens: int | None = None
    tokenizer: str | None = None
    seed: int = 0

    def check(self) -> None:
        _count("--requests", self.requests)
        _count("--input-tokens", self.input_tokens, MAX_TOKENS)
        _count("--output-tokens", self.output_tokens, MAX_TOKENS)
        _count("--sessions", self.sessions)
        _count("--turns", self.turns, 10_000)
        _count("--client-prompt-tokens", self.client_prompt_tokens, MAX_TOKENS)
        _count("--tool-result-tokens", self.tool_result_tokens, MAX_TOKENS, low=0)
        _count("--prefix-tokens", self.prefix_tokens, MAX_TOKENS, low=0)
        check_number("--seed", self.seed, low=0, high=2**32 - 1)

    def shape(self, preset_client_tokens: int | None) -> Shape:
        from vllm_launcher.benchmark.workloads import DEFAULT_CLIENT_PROMPT_TOKENS, Shape

        defaults = Shape()
        turns = self.turns or defaults.turns
        sessions = self.sessions or (math.ceil(self.requests / turns) if self.requests else defaults.sessions)
        return Shape(
            requests=self.requests or defaults.requests,
            input_tokens=self.input_tokens or defaults.input_tokens,
            output_tokens=self.output_tokens or defaults.output_tokens,
            sessions=sessions,
            turns=turns,
            client_prompt_tokens=(
                self.client_prompt_tokens or preset_client_tokens or DEFAULT_CLIENT_PROMPT_TOKENS
            ),
            tool_result_tokens=(
                self.tool_result_tokens
                if self.tool_result_tokens is not None
                else defaults.tool_result_tokens
            ),
            prefix_tokens=self.prefix_tokens,
        )

    def build(
        self, model: str | None, preset_client_tokens: int | None = None, seed: int | None = None
    ) -> Workload:
        from vllm_launcher.benchmark.workloads import Tokens, build, find_tokenizer

        tokens = Tokens(find_tokenizer(model, self.tokenizer))
        return build(
            self.workload, self.shape(preset_client_tokens), tokens, self.seed if seed is None else seed
        )


# ------------------------------------------------------------------------------ a server for the run


@dataclass
class Serving:
    target: Target
    started: bool  # started for this run (and stopped after)
    name: str | None = None
    start_s: float | None = None


def _running_server(preset_name: str) -> records.Record | None:
    for record in records.list_records():
        if (
            record.preset == preset_name
            and record.kind != "gateway"
            and records.effective_state(record) == records.READY
        ):
            return record
    return None


def _api_key(env_name: str | None) -> str | None:
    if not env_name:
        return None
    value = os.environ.get(env_name)
    if not value:
        raise ConfigError(
            f"the variable {env_name} is not set (it holds the API key)", source="--api-key-env"
        )
    return value


def start_server(
    resolved: ResolvedPreset, name: str, timeout_s: float, hardware_file: str | None = None
) -> tuple[records.Record, float]:
    """Start RESOLVED as `up --detach` does, on a free loopback port, with no restarts; the ready record and
    the seconds it took. LaunchError (the server's own reason) when it does not become ready; nothing is
    left behind then."""
    from vllm_launcher.gateway.backends import free_port
    from vllm_launcher.preset.schema import ResolvedPreset as Resolved
    from vllm_launcher.supervise import claim, detach, preflight
    from vllm_launcher.supervise.display import TerminalReporter
    from vllm_launcher.supervise.stop import cleanup

    preset = resolved.preset.model_copy(update={"host": "127.0.0.1", "port": free_port()})
    ready = Resolved(preset=preset, source=resolved.source, origin=resolved.origin, chain=resolved.chain)
    record = claim.make_record(ready, name=name, restart="never", timeout_s=timeout_s, detach=True)
    unwritable = preflight.state_dirs_problem()
    if unwritable:
        raise LaunchError(f"not starting {name}: {unwritable}")
    checked = preflight.preflight(preset, hardware_file)
    if checked.usage:
        raise ConfigError(checked.usage[0])
    if checked.problems:
        raise LaunchError(f"not starting {name}: {'; '.join(checked.problems)}")
    preflight.ensure_demo(preset)
    claim.claim(record)
    try:
        daemon = detach.start_detached(record)
        waited = detach.wait_detached(record.name, daemon, TerminalReporter(record.name, echo=False))
    except BaseException:
        current = records.read_any(record.name)
        if current is not None:
            cleanup(current)
        raise
    if not waited.ok:
        current = records.read_any(record.name)
        if current is not None:
            cleanup(current)
        why = waited.record.reason or "it did not become ready"
        cause = (waited.record.diagnosis or {}).get("cause")
        raise LaunchError(f"{name} did not start: {why}" + (f" ({cause})" if cause else ""))
    return waited.record, waited.seconds


def stop_server(name: str) -> None:
    from vllm_launcher.supervise.stop import cleanup

    current = records.read_any(name)
    if current is not None:
        cleanup(current)


@contextmanager
def serving(
    target: str | None,
    url: str | None,
    model: str | None,
    api_key_env: str | None,
    overrides: list | None,
    timeout_s: float,
) -> Iterator[tuple[Serving, ResolvedPreset | None]]:
    """The server to bench: --url as given, a preset's running server, or one started now and stopped when
    the block ends (however it ends)."""
    from vllm_launcher.benchmark.client import Target

    if (target is None) == (url is None):
        raise ConfigError("give a PRESET or --url BASE (not both)")
    key = _api_key(api_key_env)
    if url is not None:
        if overrides:
            raise ConfigError("--set applies to a PRESET, not to --url", source="--set")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"expected http://HOST:PORT/v1, not {url!r}", source="--url")
        base = url.rstrip("/")
        base = base if base.endswith("/v1") else base + "/v1"
        yield Serving(Target(base, model or "", key), started=False), None
        return
    from vllm_launcher.preset.schema import resolve

    if model is not None:
        raise ConfigError("--model names the model of --url; a preset names its own", source="--model")
    resolved = resolve(target or "", overrides)
    preset = resolved.preset
    served = preset.served_model_name or preset.model
    key = key or (_api_key(preset.api_key_env) if preset.api_key_env else None)
    running = None if overrides else _running_server(preset.name)
    if running is not None:
        yield Serving(Target(running.base_url, served, key), started=False, name=running.name), resolved
        return
    name = f"bench-{preset.name}"[:64]
    record, seconds = start_server(resolved, name, timeout_s)
    try:
        yield (
            Serving(Target(record.base_url, served, key), started=True, name=name, start_s=seconds),
            resolved,
        )
    finally:
        stop_server(name)


# ------------------------------------------------------------------------------------------ running


class ProgressLine:
    """requests done, elapsed, current throughput: one line redrawn on a terminal's stderr."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, progress: Any) -> None:
        if not self.tty:
            return
        now = time.perf_counter()
        if now - self.last < 0.1 and progress.done < progress.total:
            return
        self.last = now
        elapsed = max(now - progress.started, 1e-9)
        failed = f", {progress.failed} failed" if progress.failed else ""
        sys.stderr.write(
            f"\r\033[K{self.label}: {progress.done}/{progress.total} requests{failed}, "
            f"{elapsed:.1f} s, {progress.done / elapsed:.2f} req/s, "
            f"{progress.output_tokens / elapsed:.1f} tok/s"
        )
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def run_level(
    serving_target: Target,
    workload: Workload,
    concurrency: int | None,
    rate: float,
    slo: dict[str, float],
    seed: int,
    ignore_eos: bool,
    label: str,
    vllm_metrics: bool = False,
) -> tuple[dict[str, Any], RunResult]:
    """One run of WORKLOAD at CONCURRENCY: vLLM's figures plus ours (per turn, the server's view)."""
    from vllm_launcher.benchmark import client, metrics, server_metrics

    line = ProgressLine(label)
    try:
        run = client.run_blocking(
            serving_target,
            workload,
            client.LoadOptions(concurrency=concurrency, request_rate=rate, ignore_eos=ignore_eos, seed=seed),
            line,
        )
    finally:
        line.done()
    result: dict[str, Any] = {"concurrency": concurrency, "request_rate": None if math.isinf(rate) else rate}
    result.update(metrics.figures(run.records, run.duration_s, slo, prefer_vllm=vllm_metrics))
    turns = metrics.ttft_by_turn(run.records)
    if turns:
        result["ttft_by_turn"] = turns
    server = server_metrics.delta(run.server_before, run.server_after)
    server["kv_cache_usage_peak"] = run.kv_cache_usage_peak
    result["server"] = server
    if run.interrupted:
        result["interrupted"] = True
    errors = sorted({r.error for r in run.records if not r.success})
    if errors:
        result["errors"] = errors[:10]
    return result, run


def _requests_detail(run: RunResult) -> list[dict[str, Any]]:
    return [
        {
            "start_time": r.start_time,
            "success": r.success,
            "error": r.error or None,
            "prompt_len": r.prompt_len,
            "output_tokens": r.output_tokens,
            "ttft": r.ttft,
            "latency": r.latency,
            "itl": r.itl,
            "session": r.session,
            "turn": r.turn,
        }
        for r in run.records
    ]


def bench_once(
    serving_target: Target,
    workloads: list[Workload],
    levels: list[int | None],
    rate: float,
    slo: dict[str, float],
    seed: int,
    ignore_eos: bool,
    keep_requests: bool = False,
    vllm_metrics: bool = False,
) -> tuple[list[dict[str, Any]], bool]:
    """Every concurrency level in turn, each with its own prompts (WORKLOADS[i]: a level must not find the
    last one's prompts in the prefix cache); (results, interrupted). Stops at the first interrupted level."""
    runs: list[dict[str, Any]] = []
    for level, workload in zip(levels, workloads, strict=True):
        label = f"bench c={level or 'inf'}"
        result, run = run_level(
            serving_target, workload, level, rate, slo, seed, ignore_eos, label, vllm_metrics
        )
        if keep_requests:
            result["requests"] = _requests_detail(run)
        runs.append(result)
        if result.get("interrupted"):
            return runs, True
    return runs, False


def _write_json(path: str, data: Any) -> None:
    from vllm_launcher.base.atomic import write_text

    target = Path(path).expanduser()
    try:
        write_text(target, json.dumps(data, indent=2, default=str) + "\n", durable=False)
    except OSError as exc:
        raise ConfigError(f"cannot write it: {exc.strerror or exc}", source=path) from None


def bench(
    target: str | None = None,
    url: str | None = None,
    model: str | None = None,
    api_key_env: str | None = None,
    workload: str = "random",
    requests: int | None = None,
    concurrency: str = "4",
    request_rate: str = "inf",
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    sessions: int | None = None,
    turns: int | None = None,
    client_prompt_tokens: int | None = None,
    tool_result_tokens: int | None = None,
    prefix_tokens: int | None = None,
    tokenizer: str | None = None,
    seed: int = 0,
    slo: str | None = None,
    as_json: bool = False,
    save: str | None = None,
    plot: str | None = None,
    vllm_metrics: bool = False,
    timeout_s: float = 900.0,
    overrides: list | None = None,
) -> Result:
    """Measure TARGET (a preset) or --url under WORKLOAD at each --concurrency level."""
    from vllm_launcher.benchmark import client
    from vllm_launcher.benchmark.metrics import parse_slo

    wargs = WorkloadArgs(
        workload,
        requests,
        input_tokens,
        output_tokens,
        sessions,
        turns,
        client_prompt_tokens,
        tool_result_tokens,
        prefix_tokens,
        tokenizer,
        seed,
    )
    wargs.check()
    levels = parse_levels(concurrency)
    rate = parse_rate(request_rate)
    slos = parse_slo(slo)
    check_number("--timeout", timeout_s, low=0, high=7 * 86400, low_inclusive=False)
    preset = None
    if url is None and target is not None:
        from vllm_launcher.preset.schema import resolve

        preset = resolve(target, overrides).preset  # a bad preset or --set: a usage error before any start
    # The prompts first: a bad workload is a usage error before any server is started or asked.
    loads = [
        wargs.build(
            preset.model if preset else model, preset.client_prompt_tokens if preset else None, seed + index
        )
        for index in range(len(levels))
    ]
    load = loads[0]
    with serving(target, url, model, api_key_env, overrides, timeout_s) as (served, _resolved):
        if url is not None and not served.target.model:
            served.target.model = _only_model(served.target)
        info = client.probe_blocking(served.target)
        if info.max_model_len and load.longest_tokens > info.max_model_len:
            raise ConfigError(
                f"the {load.name} workload's longest request (~{load.longest_tokens} tokens) does "
                f"not fit the server's context ({info.max_model_len}): lower the sizes",
                source="--workload",
            )
        ignore_eos = info.is_vllm  # vLLM's extension; another server might refuse it
        runs, interrupted = bench_once(
            served.target, loads, levels, rate, slos, seed, ignore_eos, keep_requests=save is not None,
            vllm_metrics=vllm_metrics,
        )
        where = served.name or served.target.base_url
    result: dict[str, Any] = {
        "target": target or url,
        "server_name": where,
        "base_url": served.target.base_url,
        "model": served.target.model,
        "started_for_run": served.started,
        "start_s": served.start_s,
        "workload": load.name,
        "workload_description": load.description,
        "tokens_counted_by": load.tokens_source,
        "slo": slos or None,
        "seed": seed,
        "ignore_eos": ignore_eos,
        "vllm_version": info.version,
        "runs": runs,
    }
    notes = []
    if save is not None:
        _write_json(save, result)
        notes.append(f"vllm-launch: saved {save}")
    for run in runs:
        run.pop("requests", None)
    if plot is not None:
        notes.append(f"vllm-launch: plot {report_plot(result, plot)}")
    if served.started:
        notes.append(f"vllm-launch: stopped {served.name} (started for this run in {served.start_s:.1f} s)")
    data: Any = runs[0] | {k: v for k, v in result.items() if k != "runs"} if len(runs) == 1 else result
    code = INTERRUPTED if interrupted else (1 if all(r["completed"] == 0 for r in runs) else 0)
    if interrupted:
        notes.append("vllm-launch: interrupted: the figures cover the requests that finished")
    return Result(text=_bench_text(result), data=data, as_json=as_json, notes=notes, code=code)


def report_plot(result: dict[str, Any], path: str) -> str:
    from vllm_launcher.benchmark.report import write_plot

    return write_plot(result, path)


def _only_model(target: Target) -> str:
    import httpx

    try:
        answer = httpx.get(f"{target.base_url}/models", headers=target.headers(), timeout=30)
        served = [m.get("id") for m in answer.json().get("data") or []]
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        raise ConfigError(f"cannot reach {target.base_url}: {exc}", source="--url") from None
    if len(served) != 1:
        raise ConfigError(
            f"{target.base_url} serves {', '.join(map(str, served)) or 'no model'}: name one with --model",
            source="--model",
        )
    return str(served[0])


def _bench_text(result: dict[str, Any]) -> str:
    from vllm_launcher.benchmark.report import table

    head = [f"{result['workload_description']} against {result['model']} at {result['base_url']}"]
    if result.get("slo"):
        head.append("SLO: " + ", ".join(f"{k} <= {v:g} ms" for k, v in result["slo"].items()))
    body = table(result["runs"])
    tail = []
    for run in result["runs"]:
        for error in run.get("errors") or []:
            tail.append(f"failed (c={run.get('concurrency') or 'inf'}): {error}")
    figures_by = result["runs"][0].get("metrics_by") if result["runs"] else None
    if figures_by:
        tail.append(f"figures by {figures_by}; prompts sized by {result['tokens_counted_by']}")
    return "\n".join([*head, "", body, *(["", *tail] if tail else [])])


def tune(
    preset: str,
    max_num_seqs: str | None = None,
    max_num_batched_tokens: str | None = None,
    prefix_caching: bool = False,
    chunked_prefill: bool = False,
    max_candidates: int = 12,
    workload: str = "random",
    requests: int | None = None,
    concurrency: str = "4",
    request_rate: str = "inf",
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    sessions: int | None = None,
    turns: int | None = None,
    client_prompt_tokens: int | None = None,
    tool_result_tokens: int | None = None,
    prefix_tokens: int | None = None,
    tokenizer: str | None = None,
    seed: int = 0,
    slo: str | None = None,
    save: str | None = None,
    force: bool = False,
    hardware_file: str | None = None,
    as_json: bool = False,
    timeout_s: float = 900.0,
) -> Result:
    """Each candidate of the grid started (as `up --detach`), benched with one workload and stopped; the
    best under --slo chosen, and with --save written as a user preset extending PRESET."""
    from vllm_launcher.benchmark import tune as tuning
    from vllm_launcher.benchmark.metrics import parse_slo
    from vllm_launcher.preset.schema import resolve

    wargs = WorkloadArgs(
        workload,
        requests,
        input_tokens,
        output_tokens,
        sessions,
        turns,
        client_prompt_tokens,
        tool_result_tokens,
        prefix_tokens,
        tokenizer,
        seed,
    )
    wargs.check()
    levels = parse_levels(concurrency)
    if len(levels) != 1:
        raise ConfigError(
            "tune benches every candidate at one level: give one number", source="--concurrency"
        )
    rate = parse_rate(request_rate)
    slos = parse_slo(slo)
    seqs = tuning.parse_list(max_num_seqs, "--max-num-seqs")
    batched = tuning.parse_list(max_num_batched_tokens, "--max-num-batched-tokens")
    _count("--max-candidates", max_candidates, 1000)
    check_number("--timeout", timeout_s, low=0, high=7 * 86400, low_inclusive=False)
    if save is not None:
        from vllm_launcher.memory.fit import check_preset_name

        check_preset_name(save)
    base = resolve(preset).preset
    if save is not None and save == base.name:
        raise ConfigError(f"the tuned preset extends {base.name}: give it another name", source="--save")
    load = wargs.build(base.model, base.client_prompt_tokens, seed)
    if base.max_model_len and load.longest_tokens > base.max_model_len:
        raise ConfigError(
            f"the {load.name} workload's longest request (~{load.longest_tokens} tokens) does not "
            f"fit {base.name}'s max_model_len ({base.max_model_len}): lower the sizes",
            source="--workload",
        )
    from vllm_launcher.commands.fit import select_hardware

    hardware = select_hardware(hardware_file)
    kept, left, how = tuning.grid(
        base, hardware, load.longest_tokens, seqs, batched, prefix_caching, chunked_prefill, max_candidates
    )
    if not kept:
        reasons = "; ".join(f"{c.label()}: {c.why_not}" for c in left[:3])
        raise ConfigError(f"no candidate fits: {reasons}")
    interrupted = _run_candidates(
        preset, base, kept, load, levels[0], rate, slos, seed, timeout_s, hardware_file
    )
    best = tuning.choose(kept, slos)
    data = {
        "best": {"settings": best.settings, "result": best.result} if best else None,
        "candidates": [
            {"settings": c.settings, "result": c.result, "meets_slo": c.meets_slo, "error": c.error}
            for c in kept
        ],
        "left_out": [{"settings": c.settings, "why": c.why_not} for c in left],
        "grid": how,
        "workload": load.name,
        "workload_description": load.description,
        "concurrency": levels[0],
        "slo": slos or None,
    }
    notes: list[str] = []
    code = INTERRUPTED if interrupted else 0
    if interrupted:
        notes.append("vllm-launch: interrupted: the table covers the candidates measured so far")
    if best is None:
        code = code or 1
        notes.append("vllm-launch: no candidate " + ("met every --slo" if slos else "completed its run"))
    elif save is not None and not interrupted:
        notes.append(f"vllm-launch: saved {_save_tuned(base, preset, best, load, levels[0], save, force)}")
    return Result(
        text=_tune_text(kept, left, best, how, load, levels[0], slos),
        data=data,
        as_json=as_json,
        notes=notes,
        code=code,
    )


def _run_candidates(
    ref: str,
    base: Any,
    kept: list,
    load: Workload,
    level: int | None,
    rate: float,
    slos: dict[str, float],
    seed: int,
    timeout_s: float,
    hardware_file: str | None,
) -> bool:
    """Start, bench and stop each candidate in turn; True when Ctrl-C cut the grid short."""
    from vllm_launcher.benchmark import client
    from vllm_launcher.benchmark.tune import overrides_for
    from vllm_launcher.preset.schema import resolve

    name = f"tune-{base.name}"[:64]
    for index, candidate in enumerate(kept, start=1):
        output.err(f"vllm-launch: tune {index}/{len(kept)}: {candidate.label()}: starting")
        try:
            resolved = resolve(ref, overrides_for(candidate.settings, list(base.extra_args)))
            record, seconds = start_server(resolved, name, timeout_s, hardware_file)
        except (LaunchError, ConfigError) as exc:
            candidate.error = str(exc)
            output.err(f"vllm-launch: tune {index}/{len(kept)}: {candidate.label()}: {candidate.error}")
            continue
        except KeyboardInterrupt:  # start_server has stopped what it started
            candidate.error = "interrupted while starting"
            return True
        try:
            target = client.Target(
                record.base_url,
                base.served_model_name or base.model,
                _api_key(base.api_key_env) if base.api_key_env else None,
            )
            info = client.probe_blocking(target)
            result, _run = run_level(
                target,
                load,
                level,
                rate,
                slos,
                seed,
                info.is_vllm,
                f"tune {index}/{len(kept)} {candidate.label()}",
            )
            result["start_s"] = seconds
            candidate.result = result
        except (LaunchError, ConfigError) as exc:
            candidate.error = str(exc)
        except KeyboardInterrupt:
            candidate.error = "interrupted"
            return True
        finally:
            stop_server(name)
        if candidate.result and candidate.result.get("interrupted"):
            return True
    return False


def _fmt(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def _tune_text(
    kept: list, left: list, best: Any, how: str, load: Workload, level: int | None, slos: dict[str, float]
) -> str:
    rows = []
    for c in kept:
        r = c.result or {}
        status = (
            "best"
            if c is best
            else (
                "failed: " + (c.error or "")[:60]
                if c.error
                else ("meets SLO" if c.meets_slo and slos else ("ok" if c.meets_slo else "misses"))
            )
        )
        rows.append(
            [
                c.label(),
                r.get("completed", "-"),
                r.get("failed", "-"),
                _fmt(r.get("request_throughput"), 2),
                _fmt(r.get("request_goodput"), 2),
                _fmt(r.get("output_throughput")),
                _fmt(r.get("mean_ttft_ms")),
                _fmt(r.get("p99_ttft_ms")),
                _fmt(r.get("mean_tpot_ms"), 2),
                _fmt(r.get("p99_itl_ms"), 2),
                _fmt(r.get("mean_e2el_ms")),
                status,
            ]
        )
    table = output.table(
        [
            "CANDIDATE",
            "DONE",
            "FAILED",
            "REQ/S",
            "GOOD/S",
            "TOK/S",
            "TTFT",
            "P99 TTFT",
            "TPOT",
            "P99 ITL",
            "E2EL",
            "",
        ],
        rows,
    )
    head = [f"{load.description}, concurrency {level or 'inf'}; grid {how}"]
    if slos:
        head.append(
            "SLO: " + ", ".join(f"{k} <= {v:g} ms" for k, v in slos.items()) + " (ms columns: means and p99s)"
        )
    tail = [f"left out {c.label()}: {c.why_not}" for c in left[:10]]
    if len(left) > 10:
        tail.append(f"... and {len(left) - 10} more left out")
    if best is not None:
        tail.append(f"best: {best.label()}")
    return "\n".join([*head, "", table, *(["", *tail] if tail else [])])


def _save_tuned(
    base: Any, ref: str, best: Any, load: Workload, level: int | None, name: str, force: bool
) -> str:
    """A user preset NAME: `extends` PRESET, the chosen settings, the measured figures in its description."""
    import yaml

    from vllm_launcher.base import atomic
    from vllm_launcher.base.paths import user_presets_dir
    from vllm_launcher.benchmark.tune import prefix_caching_args
    from vllm_launcher.preset.schema import known_presets

    r = best.result or {}
    figures = (
        f"{r.get('output_throughput', 0):.1f} output tok/s, {r.get('request_throughput', 0):.2f} req/s"
        + (f", goodput {r['request_goodput']:.2f} req/s" if r.get("request_goodput") is not None else "")
        + f", mean TTFT {r.get('mean_ttft_ms', 0):.0f} ms, mean TPOT {r.get('mean_tpot_ms', 0):.1f} ms"
    )
    data: dict[str, Any] = {
        "extends": base.name if base.name in known_presets() else ref,
        "description": (
            f"{base.name} tuned by vllm-launch tune ({time.strftime('%Y-%m-%d')}): {best.label()}. "
            f"Measured with {load.description} at concurrency {level or 'inf'}: {figures}."
        ),
    }
    for key, value in best.settings.items():
        if key != "prefix_caching":
            data[key] = value
    if best.settings.get("prefix_caching") is False:
        data["extra_args"] = prefix_caching_args(list(base.extra_args), on=False)
    directory = user_presets_dir()
    target = directory / f"{name}.yaml"
    if target.exists() and not force:
        raise ConfigError(f"user preset {name!r} exists; use --force to replace it", source=target)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        atomic.write_text(target, yaml.safe_dump(data, sort_keys=False, allow_unicode=True), mode=0o600)
    except OSError as exc:
        raise LaunchError(f"cannot save {target}: {exc.strerror or exc}") from None
    return str(target)
