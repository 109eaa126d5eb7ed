"""Trust in the inputs: preset files that try to hang or recurse, flags as vLLM reads them, numbers and
names on every command, and the promise that bad input is one line (exit 2), never a traceback."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from cli_helpers import isolated_env, run_cli, user_presets_dir


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)


def one_line_error(result, code: int = 2) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("vllm-launch: error: "), result.stderr
    return result.stderr


# ------------------------------------------------------------------------------- preset loading

ALIAS_BOMB = "".join(
    [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9) if i else ', '.join(['x'] * 9)}]\n" for i in range(12)]
) + "model: m\n"


def hostile_files(directory: Path) -> dict[str, str]:
    """name -> the error `presets` must list for it."""
    (directory / "bomb.yaml").write_text(ALIAS_BOMB)
    os.mkfifo(directory / "fifo.yaml")
    (directory / "loop.yaml").symlink_to(directory / "loop2.yaml")
    (directory / "loop2.yaml").symlink_to(directory / "loop.yaml")
    (directory / "huge.yaml").write_text("model: m\n" + "# padding\n" * 120_000)
    (directory / "deep.yaml").write_text("model: m\nenv: " + "[" * 40 + "]" * 40 + "\n")
    for i in range(40):
        (directory / f"chain{i}.yaml").write_text(f"extends: chain{i + 1}\n" if i < 39 else "model: m\n")
    (directory / "ping.yaml").write_text("extends: pong\nmodel: m\n")
    (directory / "pong.yaml").write_text("extends: ping\n")
    (directory / "typo.yaml").write_text("modle: m\n")
    return {"bomb": "YAML aliases", "fifo": "FIFO", "loop": "symlink loop", "huge": "bytes",
            "deep": "nested more than 16", "chain0": "deeper than 32", "ping": "cycle",
            "typo": "unknown key (did you mean model?)"}


def test_hostile_files_in_the_user_presets_directory_are_listed_invalid_and_block_nothing(env):
    expected = hostile_files(user_presets_dir(env))
    listing = run_cli(["presets", "--json"], env, timeout=60)
    assert listing.returncode == 0, listing.stderr
    entries = {e["name"]: e for e in json.loads(listing.stdout)}
    for name, why in expected.items():
        assert entries[name]["error"] and why in entries[name]["error"], (name, entries[name])
    assert entries["gpu-7b"]["error"] is None and entries["chain8"]["error"] is None  # 32 files: fine
    table = run_cli(["presets"], env, timeout=60)
    assert table.returncode == 0 and "gpu-7b" in table.stdout and "(invalid, see below)" in table.stdout
    assert "Traceback" not in table.stderr
    doctor = run_cli(["doctor", "--json"], env, timeout=180)
    assert "Traceback" not in doctor.stderr
    findings = json.loads(doctor.stdout)["findings"]
    assert {f["preset"] for f in findings if f["code"] == "VL100"} >= set(expected)


@pytest.mark.parametrize("name", ["bomb", "fifo", "loop", "huge", "deep", "chain0", "ping"])
def test_each_hostile_file_is_one_line_and_fast(env, name):
    hostile_files(user_presets_dir(env))
    for command in (["render", name], ["show", name], ["render", name, "--format", "k8s"]):
        one_line_error(run_cli(command, env, timeout=30))


def test_extends_depth_32_is_fine_and_33_is_refused(env):
    directory = user_presets_dir(env)
    for i in range(33):
        (directory / f"c{i}.yaml").write_text(f"extends: c{i + 1}\n" if i < 32 else "model: m\n")
    assert run_cli(["render", "c1"], env).returncode == 0  # 32 files
    assert "deeper than 32" in one_line_error(run_cli(["render", "c0"], env))


def test_a_missing_key_is_reported_after_an_unknown_one(env, tmp_path):
    bad = tmp_path / "typo.yaml"
    bad.write_text("port: 9000\nmodle: x\n")  # `model` is missing because it is misspelt
    err = one_line_error(run_cli(["render", str(bad)], env))
    assert re.search(r"typo\.yaml:2: modle: unknown key \(did you mean model\?\)", err), err


# ------------------------------------------------------------------------------ flags and secrets


@pytest.mark.parametrize(("arg", "expected"), [
    ("--api_key=sk-1", "--api_key (vLLM reads it as --api-key) would put a secret on the command line"),
    ("--api-ke=sk-1", "--api-ke (vLLM reads it as --api-key) would put a secret"),
    ("--hf_token=hf_1", "--hf_token (vLLM reads it as --hf-token) would put a secret"),
    ("--api-key.x=sk", "--api-key.x (vLLM reads it as --api-key) would put a secret"),
    ("--max_model_len=5",
     "--max_model_len (vLLM reads it as --max-model-len) is the preset field `max_model_len`"),
    ("--max-model=5", "is the preset field `max_model_len`"),
    ("--device-memory-utilization=0.5", "is the preset field `gpu_memory_utilization`"),
    ("--no-enforce-eager", "is the preset field `enforce_eager`"),
    ("--config=/tmp/x.yaml", "--config is not allowed in extra_args"),
    ("--seed=1\n--api-key=x", "control character U+000A"),
])
def test_extra_args_are_checked_as_vllm_reads_them(env, tmp_path, arg, expected):
    bad = tmp_path / "flags.yaml"
    bad.write_text(f"model: m\nextra_args:\n  - {json.dumps(arg)}\n")
    assert expected in one_line_error(run_cli(["render", str(bad)], env))


def test_legitimate_extra_args_pass(env, tmp_path):
    good = tmp_path / "ok.yaml"
    good.write_text('model: m\nextra_args: ["--seed=1", "--model-impl=vllm", "--max-num-partial-prefills", '
                    '"2", "--ssl-keyfile=/k.pem"]\n'.replace('"2", ', ""))
    result = run_cli(["render", str(good), "--format", "json"], env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["argv"][-3:] == ["--model-impl=vllm", "--max-num-partial-prefills",
                                                      "--ssl-keyfile=/k.pem"]


def test_non_loopback_host_without_key_is_a_warning_of_up_and_dry_run(env):
    dry = run_cli(["up", "cpu-test", "--dry-run", "--host", "0.0.0.0", "--kv-cache", "1"], env)
    assert "# warning: VL116 host 0.0.0.0 serves on the network with no API key" in dry.stdout, dry.stdout
    quiet = run_cli(["up", "cpu-test", "--dry-run", "--kv-cache", "1"], env)
    assert "VL116" not in quiet.stdout


# ---------------------------------------------------------------------------- numbers and names

BAD_VALUES = [
    (["render", "gpu-7b", "--gpu-memory-utilization", "nan"], "finite"),
    (["render", "gpu-7b", "--gpu-memory-utilization", "inf"], "finite"),
    (["render", "gpu-7b", "--tp", "0"], "greater than or equal to 1"),
    (["render", "gpu-7b", "--max-model-len", "99999999999999"], "less than or equal to"),
    (["render", "gpu-7b", "--kv-cache", "-1"], "greater than or equal to 1"),
    (["render", "gpu-7b", "--format", "k8s", "--weights-gib", "nan"], "finite"),
    (["render", "gpu-7b", "--format", "k8s", "--startup-timeout", "999999999999"], "less than or equal to"),
    (["render", "gpu-7b", "--format", "k8s", "--replicas", "0"], "greater than or equal to 1"),
    (["estimate", "gpu-7b", "--device", "cuda", "--gpus", "0", "--gpu-mem-gib", "80"], "--gpus"),
    (["estimate", "gpu-7b", "--device", "cuda", "--gpu-mem-gib", "nan"], "finite"),
    (["estimate", "gpu-7b", "--device", "cuda", "--gpu-mem-gib", "-inf"], "finite"),
    (["estimate", "cpu-test", "--ram-gib", "0"], "--ram-gib"),
    (["fit", "Qwen/Qwen2.5-Coder-7B-Instruct", "--device", "cuda", "--gpu-mem-gib", "24", "--gpus", "-3"],
     "--gpus"),
    (["fit", "Qwen/Qwen2.5-Coder-7B-Instruct", "--context", "99999999999999"], "--context"),
    (["up", "cpu-test", "--timeout", "nan", "--dry-run"], "finite"),
    (["up", "cpu-test", "--timeout", "-5", "--dry-run"], "--timeout"),
    (["up", "cpu-test", "--timeout", "1e300", "--dry-run"], "--timeout"),
    (["up", "cpu-test", "--name", "-rf", "--dry-run"], "not a server name"),
    (["up", "cpu-test", "--name", "a" * 65, "--dry-run"], "not a server name"),
    (["up", "cpu-test", "--name", "../../x", "--dry-run"], "not a server name"),
    (["up", "cpu-test", "--gpus", "", "--dry-run"], "--gpus"),
    (["down", "--all", "--timeout", "nan"], "finite"),
    (["down", "--all", "--timeout", "-1"], "--timeout"),
    (["down", "../../etc/passwd"], "not a server name"),
    (["logs", "x", "-n", "-1"], "lines"),
    (["logs", "..", "-n", "5"], "not a server name"),
    (["status", "-" + "x" * 70], "No such option"),
    (["status", "x" * 70], "not a server name"),
    (["show", "gpu-7b", "--set", "max_num_seqs=.inf"], "max_num_seqs"),
    (["show", "gpu-7b", "--set", "gpu_memory_utilization=.nan"], "finite"),
]


@pytest.mark.parametrize(("args", "expected"), BAD_VALUES, ids=[" ".join(a)[:60] for a, _e in BAD_VALUES])
def test_bad_numbers_and_names_are_usage_errors(env, args, expected):
    assert expected in one_line_error(run_cli(args, env, timeout=60))


def test_a_preset_name_over_64_characters_is_refused(env):
    directory = user_presets_dir(env)
    (directory / f"{'n' * 65}.yaml").write_text("model: m\n")
    err = one_line_error(run_cli(["render", "n" * 65], env))
    assert "name" in err


# --------------------------------------------------------------------------------- no traceback


def run_in_process(args: list[str], capsys) -> tuple[int, str, str]:
    """`vllm-launch ARGS` in this process: any exception other than SystemExit is a traceback a user would
    have seen."""
    from vllm_launcher.cli import main

    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_no_command_shows_a_traceback_for_hostile_arguments(env, tmp_path, capsys, monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    hostile = ["\x1b[31mred", "$(id)", "a\nb", "%n", "-", "\u202e", str(fifo), "/dev/null", str(tmp_path)]
    commands = [["render"], ["show"], ["estimate"], ["doctor"], ["up", "--dry-run"], ["status"], ["logs"],
                ["down"], ["doctor", "--log"], ["doctor", "--hardware"], ["estimate", "gpu-7b", "--hardware"],
                ["doctor", "--endpoint"], ["fit"], ["render", "gpu-7b", "--format"],
                ["render", "gpu-7b", "--set"], ["render", "gpu-7b", "--format", "k8s", "--hf-cache-path"],
                ["up", "cpu-test", "--dry-run", "--name"]]
    for command in commands:
        for value in hostile:
            code, _out, err = run_in_process([*command, value], capsys)
            assert code in (0, 1, 2), (command, value, code, err)
            assert "\x1b" not in err and "\u202e" not in err, (command, value, err)
