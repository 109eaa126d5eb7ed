"""Preset loading: schema, extends, user presets, paths, overrides, and every kind of bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli_helpers import isolated_env, render_json, run_cli, user_presets_dir

BUILTINS = {"gpu-7b", "gpu-14b", "gpu-32b-tp2", "deepseek-coder-v2-lite", "codestral-22b", "cpu-test",
            "cpu-16k", "cpu-3b"}


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)


def flags(plan: dict) -> dict[str, str | None]:
    argv = plan["argv"][3:]
    out: dict[str, str | None] = {}
    for i, word in enumerate(argv):
        if word.startswith("--"):
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            out[word] = None if nxt is None or nxt.startswith("--") else nxt
    return out


def test_presets_lists_every_builtin_with_columns(env: dict[str, str]) -> None:
    result = run_cli(["presets"], env)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "MODEL", "DEVICE", "CONTEXT", "TP", "FROM"]
    names = {row.split()[0] for row in rows}
    assert names >= BUILTINS
    tp2 = next(row for row in rows if row.startswith("gpu-32b-tp2"))
    assert (tp2.split()[1:5] == ["Qwen/Qwen2.5-Coder-32B-Instruct", "cuda", "model", "max"]
            or "2" in tp2.split())


def test_builtin_descriptions_carry_the_guide_notes(env: dict[str, str]) -> None:
    notes = {"gpu-7b": "16 GB", "gpu-14b": "32 GB", "gpu-32b-tp2": "64 GB", "deepseek-coder-v2-lite": "128K",
             "codestral-22b": "48 GB", "cpu-test": "8 GB", "cpu-16k": "16K", "cpu-3b": "12 GB"}
    for name, note in notes.items():
        shown = run_cli(["show", name], env)
        assert shown.returncode == 0, shown.stderr
        assert note in " ".join(shown.stdout.split()), (name, note)


def test_show_resolves_extends_and_overrides(env: dict[str, str]) -> None:
    result = run_cli(["show", "cpu-3b", "--port", "9001", "--set", "max_num_seqs=4"], env)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "model: Qwen/Qwen2.5-Coder-3B-Instruct" in text  # its own
    assert "max_model_len: 16384" in text  # from cpu-16k
    assert "dtype: float32" in text and "enforce_eager: true" in text  # from cpu-test
    assert "port: 9001" in text and "max_num_seqs: 4" in text  # overrides
    assert "extends" not in text.split("\n", 1)[1]


def test_user_preset_overrides_builtin_and_can_extend_it(env: dict[str, str]) -> None:
    (user_presets_dir(env) / "gpu-7b.yaml").write_text("extends: gpu-7b\nport: 8123\n")
    plan = render_json(["gpu-7b"], env)
    assert flags(plan)["--port"] == "8123"
    assert flags(plan)["--model"] == "Qwen/Qwen2.5-Coder-7B-Instruct"
    listing = run_cli(["presets"], env).stdout
    assert re.search(r"^gpu-7b .*user: ", listing, re.MULTILINE)


def test_preset_given_as_a_path(env: dict[str, str], tmp_path: Path) -> None:
    mine = tmp_path / "my.yaml"
    mine.write_text("extends: cpu-test\nmodel: /models/x\nkv_cache_space_gib: 2\nenv:\n"
                    "  OMP_NUM_THREADS: 2\n")
    plan = render_json([str(mine)], env)
    assert flags(plan)["--model"] == "/models/x"
    assert plan["env"] == {"VLLM_CPU_KVCACHE_SPACE": "2", "OMP_NUM_THREADS": "2"}
    relative = run_cli(["render", "./my.yaml", "-f", "json"], env, cwd=tmp_path)
    assert relative.returncode == 0, relative.stderr


def test_every_override_option_reaches_its_flag(env: dict[str, str]) -> None:
    plan = render_json(["cpu-test", "--model", "m/x", "--host", "0.0.0.0", "--port", "9000",
                        "--max-model-len", "4096", "--max-num-batched-tokens", "8192",
                        "--gpu-memory-utilization", "0.5", "--tp", "1", "--dtype", "bfloat16",
                        "--kv-cache", "3", "--set", "tool_calling.parser=qwen3_coder",
                        "--set", "enable_chunked_prefill=false"], env)
    f = flags(plan)
    assert (f["--model"], f["--host"], f["--port"]) == ("m/x", "0.0.0.0", "9000")
    assert (f["--max-model-len"], f["--max-num-batched-tokens"]) == ("4096", "8192")
    assert ((f["--gpu-memory-utilization"], f["--tensor-parallel-size"], f["--dtype"])
            == ("0.5", "1", "bfloat16"))
    assert f["--tool-call-parser"] == "qwen3_coder" and "--no-enable-chunked-prefill" in f
    assert plan["env"]["VLLM_CPU_KVCACHE_SPACE"] == "3"


def test_kv_cache_on_gpu_renders_memory_bytes(env: dict[str, str]) -> None:
    assert (flags(render_json(["gpu-7b", "--kv-cache", "20"], env))["--kv-cache-memory-bytes"]
            == str(20 * 2**30))


def test_api_key_is_passed_by_reference_never_by_value(env: dict[str, str]) -> None:
    env["MY_VLLM_KEY"] = "sk-secret-value"
    plan = render_json(["gpu-7b", "--set", "api_key_env=MY_VLLM_KEY"], env)
    assert plan["env"] == {"VLLM_API_KEY": "${MY_VLLM_KEY}"}
    shell = run_cli(["render", "gpu-7b", "--set", "api_key_env=MY_VLLM_KEY"], env).stdout
    assert 'VLLM_API_KEY="${MY_VLLM_KEY}"' in shell
    for out in (str(plan), shell,
                run_cli(["show", "gpu-7b", "--set", "api_key_env=MY_VLLM_KEY"], env).stdout):
        assert "sk-secret-value" not in out
        assert "--api-key" not in out


def test_shell_format_is_copy_pasteable(env: dict[str, str]) -> None:
    import shlex

    text = run_cli(["render", "cpu-16k", "--kv-cache", "8", "--set", "env.NOTE=a b'c"], env).stdout
    lines = text.rstrip("\n").split("\n")
    assert all(line.endswith(" \\") for line in lines[:-1]) and len(lines) == 10
    words = shlex.split(text)
    assert words[:2] == ["VLLM_CPU_KVCACHE_SPACE=8", "NOTE=a b'c"]


def test_serve_entrypoint(env: dict[str, str]) -> None:
    plan = render_json(["gpu-32b-tp2", "--entrypoint", "serve"], env)
    assert plan["argv"][:3] == ["vllm", "serve", "Qwen/Qwen2.5-Coder-32B-Instruct"]
    assert "--model" not in plan["argv"] and "--tensor-parallel-size" in plan["argv"]


# ------------------------------------------------------------------------------------ bad input

BAD_FILES = {
    "malformed": ("model: [unclosed\nport: 1\n", r"bad\.yaml:\d+: malformed YAML"),
    "unknown_key": ("model: m\nmax_modle_len: 5\n",
                    r"bad\.yaml:2: max_modle_len: unknown key \(did you mean max_model_len\?\)"),
    "wrong_type": ("model: m\nport: eighty\n", r"bad\.yaml:2: port: .*integer"),
    "port_zero": ("model: m\nport: 0\n", r"bad\.yaml:2: port: .*greater than or equal to 1"),
    "port_high": ("model: m\nport: 70000\n", r"bad\.yaml:2: port: .*less than or equal to 65535"),
    "util": ("model: m\ngpu_memory_utilization: 1.5\n",
             r"bad\.yaml:2: gpu_memory_utilization: .*less than or equal to 1"),
    "tp_zero": ("model: m\ntensor_parallel_size: 0\n",
                r"bad\.yaml:2: tensor_parallel_size: .*greater than or equal to 1"),
    "neg_context": ("model: m\nmax_model_len: -5\n",
                    r"bad\.yaml:2: max_model_len: .*greater than or equal to 1"),
    "nested": ("model: m\ntool_calling:\n  enabled: true\n  parsr: hermes\n",
               r"bad\.yaml:4: tool_calling\.parsr: unknown key"),
    "extra_arg": ("model: m\nextra_args:\n  - seed=1\n",
                  r"bad\.yaml:3: extra_args\.0: .*must start with '--'"),
    "secret": ("model: m\nenv:\n  HF_TOKEN: hf_abc\n", r"bad\.yaml:3: env.HF_TOKEN: HF_TOKEN is a secret"),
    "missing_model": ("port: 8000\n", r"bad\.yaml: model: required"),
    "not_mapping": ("- a\n- b\n", r"bad\.yaml:1: a preset must be a mapping"),
    "empty": ("", r"bad\.yaml: empty preset file"),
    "device": ("model: m\ndevice: tpu\n", r"bad\.yaml:2: device: .*'cuda' or 'cpu'"),
    "duplicate": ("model: a\nport: 1\nmodel: b\n", r"bad\.yaml:3: model: duplicate key \(first on line 1\)"),
    "secret_flag": ("model: m\nextra_args: ['--seed=1', '--api-key=sk-x']\n",
                    r"bad\.yaml:2: extra_args\.1: --api-key would put a secret on the command line; "
                    r"set api_key_env"),
    "field_flag": ("model: m\nextra_args:\n  - --port=9\n",
                   r"bad\.yaml:3: extra_args\.0: --port is the preset field `port`"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_preset_file_is_one_line_exit_2(case: str, env: dict[str, str], tmp_path: Path) -> None:
    text, pattern = BAD_FILES[case]
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    for command in (["render", str(bad)], ["render", str(bad), "-f", "json"], ["show", str(bad)]):
        result = run_cli(command, env)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
        assert re.search(pattern, result.stderr), result.stderr


def test_error_in_parent_names_the_parents_file_and_line(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "parent.yaml").write_text("model: m\n\nport: 99999\n")
    (tmp_path / "child.yaml").write_text("extends: ./parent.yaml\nmax_model_len: 10\n")
    result = run_cli(["render", str(tmp_path / "child.yaml")], env)
    assert result.returncode == 2
    assert re.search(r"parent\.yaml:3: port: ", result.stderr), result.stderr


def test_extends_cycle_and_missing_parent(env: dict[str, str], tmp_path: Path) -> None:
    presets = user_presets_dir(env)
    (presets / "a.yaml").write_text("extends: b\nmodel: m\n")
    (presets / "b.yaml").write_text("extends: a\n")
    cycle = run_cli(["render", "a"], env)
    assert cycle.returncode == 2 and "`extends` cycle" in cycle.stderr and "Traceback" not in cycle.stderr
    (presets / "c.yaml").write_text("model: m\nextends: nowhere\n")
    missing = run_cli(["render", "c"], env)
    assert missing.returncode == 2
    assert re.search(r"c\.yaml:2: extends: unknown preset 'nowhere'", missing.stderr), missing.stderr


def test_unknown_preset_suggests_close_names(env: dict[str, str]) -> None:
    result = run_cli(["render", "gpu-7"], env)
    assert result.returncode == 2
    assert "unknown preset 'gpu-7'; did you mean gpu-7b" in result.stderr
    assert result.stderr.count("\n") == 1


def test_unreadable_file(env: dict[str, str], tmp_path: Path) -> None:
    assert run_cli(["render", str(tmp_path / "absent.yaml")], env).stderr.strip().endswith(
        "absent.yaml: no such file")
    locked = tmp_path / "locked.yaml"
    locked.write_text("model: m\n")
    locked.chmod(0)
    result = run_cli(["render", str(locked)], env)
    # root can read anything; then it renders, otherwise it is a one-line "cannot read" error.
    assert ((result.returncode, "cannot read") in ((0, "cannot read"), (2, "cannot read"))
            or "cannot read" in result.stderr)
    directory = tmp_path / "dir.yaml"
    directory.mkdir()
    assert "is a directory" in run_cli(["render", str(directory)], env).stderr


@pytest.mark.parametrize(("args", "pattern"), [
    (["--set", "colour=blue"], r"--set: colour: unknown key; valid keys: .*max_model_len"),
    (["--set", "max_model_len"], r"--set: expected KEY=VALUE"),
    (["--set", "port=0"], r"--set port: port: .*greater than or equal to 1"),
    (["--port", "70000"], r"--port: port: .*less than or equal to 65535"),
    (["--gpu-memory-utilization", "1.5"], r"--gpu-memory-utilization: gpu_memory_utilization: "),
    (["--tp", "0"], r"--tp: tensor_parallel_size: "),
    (["--max-model-len", "-1"], r"--max-model-len: max_model_len: "),
    (["--port", "x"], r"Invalid value for '--port'"),
    (["--format", "yaml"], r"Invalid value for '--format'"),
    (["--bogus"], r"No such option: --bogus"),
])
def test_bad_override_is_one_line_exit_2(args: list[str], pattern: str, env: dict[str, str]) -> None:
    result = run_cli(["render", "gpu-7b", *args], env)
    assert result.returncode == 2, result
    assert result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    assert re.search(pattern, result.stderr), result.stderr


def test_render_output_dir_that_is_a_file(env: dict[str, str], tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    for fmt in ("json", "k8s"):
        result = run_cli(["render", "gpu-7b", "-f", fmt, "--output", str(afile)], env)
        assert (result.returncode == 2 and "--output: " in result.stderr
                and "is a file, not a directory" in result.stderr)
        assert afile.read_text() == "keep me"


def test_render_output_writes_files(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli(["render", "cpu-16k", "-f", "json", "--output", str(out)], env)
    assert result.returncode == 0, result.stderr
    import json

    assert json.loads((out / "command.json").read_text())["env"] == {}
    assert run_cli(["render", "gpu-7b", "-f", "k8s", "-o", str(out)], env).returncode == 0
    assert {"deployment.yaml", "service.yaml"} <= {p.name for p in out.iterdir()}
