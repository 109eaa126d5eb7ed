"""The parameters of `bench` and `tune`, declared once (cli.options' Param), and their two rows of the
command table. Stdlib only: `--help` must not import the load generator."""

from __future__ import annotations

from vllm_launcher.cli.options import JSON, OVERRIDES_PANEL, Param, argument, flag

WORKLOAD_PANEL = "Workload"

WORKLOAD: tuple[Param, ...] = (
    Param(
        "workload",
        ("--workload", "-w"),
        str,
        "random, agent (sessions x turns over a shared system prompt "
        "and tools), prefix (one shared prefix) or a JSONL FILE of requests or conversations.",
        default="random",
        metavar="random|agent|prefix|FILE",
        panel=WORKLOAD_PANEL,
    ),
    Param(
        "requests",
        ("--requests", "-n"),
        int,
        "Requests to send (agent: sessions x turns; default 32, agent 4 x 4).",
        metavar="N",
        panel=WORKLOAD_PANEL,
    ),
    Param(
        "concurrency",
        ("--concurrency", "-c"),
        str,
        "Requests in flight at most; a list (1,4,16) sweeps it (default 4).",
        default="4",
        metavar="C[,C...]",
        panel=WORKLOAD_PANEL,
    ),
    Param(
        "request_rate",
        ("--request-rate",),
        str,
        "Requests (agent: sessions) per second, Poisson arrivals; inf: all at once.",
        default="inf",
        metavar="R",
        panel=WORKLOAD_PANEL,
    ),
    Param(
        "input_tokens",
        ("--input-tokens",),
        int,
        "Prompt tokens of each random/prefix request (default 256).",
        metavar="N",
        panel=WORKLOAD_PANEL,
    ),
    Param(
        "output_tokens",
        ("--output-tokens",),
        int,
        "Tokens to generate per request, exactly that many "
        "where the server allows ignoring EOS (vLLM does) (default 64).",
        metavar="N",
        panel=WORKLOAD_PANEL,
    ),
    Param(
        "sessions",
        ("--sessions",),
        int,
        "agent: conversations (default 4).",
        metavar="S",
        panel=WORKLOAD_PANEL,
    ),
    Param(
        "turns",
        ("--turns",),
        int,
        "agent: turns per conversation (default 4).",
        metavar="T",
        panel=WORKLOAD_PANEL,
    ),
    Param(
        "client_prompt_tokens",
        ("--client-prompt-tokens",),
        int,
        "agent: tokens of the shared system "
        "prompt and tools (default: the preset's client_prompt_tokens, else 6500).",
        metavar="N",
        panel=WORKLOAD_PANEL,
    ),
    Param(
        "tool_result_tokens",
        ("--tool-result-tokens",),
        int,
        "agent: tokens of each tool result (default 256).",
        metavar="N",
        panel=WORKLOAD_PANEL,
    ),
    Param(
        "prefix_tokens",
        ("--prefix-tokens",),
        int,
        "prefix: tokens shared by every request (default 3/4 of --input-tokens).",
        metavar="N",
        panel=WORKLOAD_PANEL,
    ),
    Param(
        "tokenizer",
        ("--tokenizer",),
        str,
        "tokenizer.json (or its directory) to size prompts with "
        "(default: the model's, when local or cached; else one word per token).",
        metavar="PATH",
        panel=WORKLOAD_PANEL,
    ),
    Param("seed", ("--seed",), int, "Seed of the prompts and arrivals.", default=0, panel=WORKLOAD_PANEL),
)
SLO = Param(
    "slo",
    ("--slo",),
    str,
    "Goodput SLOs in milliseconds, as vLLM's --goodput (itl: the longest gap between two tokens).",
    metavar="ttft:MS,tpot:MS,itl:MS,e2el:MS",
)
SET = Param(
    "ov_set",
    ("--set",),
    str,
    "Set a preset field for this run (repeatable), e.g. --set max_num_seqs=8.",
    metavar="KEY=VALUE",
    many=True,
    panel=OVERRIDES_PANEL,
    group="overrides",
)
START_TIMEOUT = Param(
    "timeout_s",
    ("--timeout",),
    float,
    "Give up on a server start after S seconds.",
    default=900.0,
    metavar="S",
)

BENCH_PARAMS: tuple[Param, ...] = (
    argument(
        "target",
        "[PRESET]",
        "A preset: its server, or one started for the run and stopped after (or none, with --url).",
        required=False,
    ),
    Param(
        "url",
        ("--url",),
        str,
        "Any OpenAI-compatible server instead of a preset, e.g. http://127.0.0.1:8000/v1.",
        metavar="BASE",
    ),
    Param("model", ("--model",), str, "With --url: the served model name (default: the only one served)."),
    Param(
        "api_key_env", ("--api-key-env",), str, "Send this variable's value as the API key.", metavar="NAME"
    ),
    *WORKLOAD,
    SLO,
    JSON,
    Param(
        "save",
        ("--save",),
        str,
        "Write the whole result (every request's timings too) as JSON to FILE.",
        metavar="FILE",
    ),
    Param(
        "plot",
        ("--plot",),
        str,
        "Draw the latency percentiles per concurrency and TTFT per turn: FILE.png "
        "(with matplotlib) or FILE.html (inline SVG, no dependency).",
        metavar="FILE",
    ),
    flag(
        "vllm_metrics",
        ("--vllm-metrics",),
        "Compute the figures with vLLM's own calculate_metrics (imports vLLM: seconds of start-up); "
        "by default a stdlib copy of it does, held equal by the tests.",
    ),
    START_TIMEOUT,
    SET,
)

TUNE_PARAMS: tuple[Param, ...] = (
    argument("preset", "PRESET", "The preset to tune (name or YAML path)."),
    Param(
        "max_num_seqs",
        ("--max-num-seqs",),
        str,
        "Candidates of max_num_seqs (default: 1 to 64 in powers of 2, bounded by the KV cache).",
        metavar="N[,N...]",
    ),
    Param(
        "max_num_batched_tokens",
        ("--max-num-batched-tokens",),
        str,
        "Candidates of max_num_batched_tokens (default: 512 to 8192, bounded by the context).",
        metavar="N[,N...]",
    ),
    flag("prefix_caching", ("--prefix-caching",), "Also try each candidate without prefix caching."),
    flag(
        "chunked_prefill",
        ("--chunked-prefill",),
        "Also try each candidate without chunked prefill (where the longest request fits one batch).",
    ),
    Param(
        "max_candidates",
        ("--max-candidates",),
        int,
        "Stop the grid at this many candidates.",
        default=12,
        metavar="N",
    ),
    *WORKLOAD,
    SLO,
    Param(
        "save",
        ("--save",),
        str,
        "Save the chosen settings as a user preset NAME extending PRESET.",
        metavar="NAME",
    ),
    flag("force", ("--force",), "With --save: replace an existing preset."),
    Param(
        "hardware_file",
        ("--hardware",),
        str,
        "Bound the grid by a saved probe instead of this machine.",
        metavar="FILE",
    ),
    JSON,
    START_TIMEOUT,
)

BENCH_HELP = (
    "Measure a server under load (random, agent, prefix or a file): vLLM's TTFT, TPOT, ITL, E2EL, "
    "throughput and goodput, plus the server's prefix-cache hits."
)
TUNE_HELP = (
    "Try max_num_seqs x max_num_batched_tokens within the memory fit, bench each, and pick the "
    "best under --slo (save it as a preset)."
)
