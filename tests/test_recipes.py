"""`vllm-launch recipes`: vLLM's model recipes (the vllm-project/recipes format) listed and turned into
checked presets: the variant this machine's GPU memory holds, the features, the CPU overrides, the least
vLLM version; hostile recipes refused like hostile presets; the tool-parser table agrees with them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from cli_helpers import isolated_env, render_json, run_cli
from test_vllm_parser import VLLM_PARSER_GROUP, vllm_parse

from vllm_launcher.doctor.rules_preset import COMPATIBLE_PARSERS
from vllm_launcher.preset import recipes as recipe_mod
from vllm_launcher.preset import tool_parsers

RECIPES = Path(__file__).parent / "fixtures" / "recipes"
CODER = "Qwen/Qwen2.5-Coder-7B-Instruct"


def preset_of(env, *args: str) -> dict:
    result = run_cli(["recipes", *args, "--dir", str(RECIPES)], env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_the_list_shows_every_recipe_and_warns_about_broken_files(tmp_path):
    result = run_cli(["recipes", "--dir", str(RECIPES)], isolated_env(tmp_path))
    assert result.returncode == 0
    assert CODER in result.stdout and "default 24 GB, fp8 12 GB" in result.stdout
    assert "not-yaml.yaml:2: malformed YAML" in result.stderr and "Traceback" not in result.stderr
    listed = json.loads(run_cli(["recipes", "--dir", str(RECIPES), "--json"], isolated_env(tmp_path)).stdout)
    assert {r["model_id"] for r in listed["recipes"]} >= {CODER, "Qwen/Qwen3-30B-A3B"}


@pytest.mark.parametrize(("gpu_gib", "quantization"), [("16", "fp8"), ("80", None)])
def test_the_variant_is_the_most_precise_one_the_gpu_holds(tmp_path, gpu_gib, quantization):
    env = isolated_env(tmp_path)
    preset = preset_of(env, CODER, "--device", "cuda", "--gpus", "1", "--gpu-mem-gib", gpu_gib)
    assert preset.get("quantization") == quantization
    assert preset["tool_calling"] == {"enabled": True, "parser": "hermes"}
    assert preset["max_model_len"] == 32768
    too_small = run_cli(["recipes", CODER, "--dir", str(RECIPES), "--device", "cuda", "--gpus", "1",
                         "--gpu-mem-gib", "8"], env)
    assert too_small.returncode == 2 and "the smallest needs 12 GB" in too_small.stderr


def test_features_opt_in_env_and_cpu_overrides(tmp_path):
    env = isolated_env(tmp_path)
    default = preset_of(env, "Qwen/Qwen3-30B-A3B", "--device", "cpu")
    assert "--reasoning-parser=qwen3" in default["extra_args"] and "max_model_len" not in default
    assert default["env"] == {"VLLM_USE_V1": "1"} and default["max_num_batched_tokens"] == 16384
    long = preset_of(env, "Qwen/Qwen3-30B-A3B", "--device", "cpu", "--feature", "long_context")
    assert long["max_model_len"] == 131072
    assert any(a.startswith("--hf-overrides=") for a in long["extra_args"])
    assert "tool_calling" not in long  # only the features asked for
    unknown = run_cli(["recipes", "Qwen/Qwen3-30B-A3B", "--dir", str(RECIPES), "--feature", "nope"], env)
    assert unknown.returncode == 2 and "no feature nope" in unknown.stderr


def test_a_recipe_newer_than_the_installed_vllm_warns(tmp_path):
    result = run_cli(["recipes", "meta-llama/Llama-3.1-8B-Instruct", "--dir", str(RECIPES), "--device",
                      "cuda", "--gpus", "1", "--gpu-mem-gib", "80"], isolated_env(tmp_path))
    assert result.returncode == 0 and "the recipe needs vLLM >= 99.0.0" in result.stderr


@pytest.mark.parametrize(("model", "needle"), [
    ("Hostile/secret-on-argv", "would put a secret on the command line"),
    ("Hostile/newline-flag", "LINE FEED"),
    ("nobody/unknown", "no recipe for 'nobody/unknown'"),
])
def test_hostile_or_missing_recipes_are_one_line_and_exit_2(tmp_path, model, needle):
    result = run_cli(["recipes", model, "--dir", str(RECIPES), "--device", "cpu"], isolated_env(tmp_path))
    assert result.returncode == 2 and needle in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_saved_recipe_presets_render(tmp_path):
    env = isolated_env(tmp_path)
    saved = run_cli(["recipes", CODER, "--dir", str(RECIPES), "--device", "cuda", "--gpus", "1",
                     "--gpu-mem-gib", "16", "--save", "coder-fp8"], env)
    assert saved.returncode == 0 and "saved" in saved.stderr
    argv = render_json(["coder-fp8"], env)["argv"]
    assert argv[argv.index("--quantization") + 1] == "fp8" and "--enable-auto-tool-choice" in argv
    again = run_cli(["recipes", CODER, "--dir", str(RECIPES), "--save", "coder-fp8"], env)
    assert again.returncode == 2 and "--force" in again.stderr


def test_the_tool_parser_table_agrees_with_the_recipes():
    recipes, _broken = recipe_mod.find_recipes(RECIPES)
    checked = 0
    for recipe in recipes:
        args = [a for f in recipe.features.values() for a in f]
        if "--tool-call-parser" not in args:
            continue
        parser = args[args.index("--tool-call-parser") + 1]
        ours = tool_parsers.parser_for(recipe.model_id)
        assert ours == parser or parser in COMPATIBLE_PARSERS.get(ours or "", set()), (recipe.model_id, ours)
        checked += 1
    assert checked >= 3


def test_recipes_need_a_directory(tmp_path):
    env = isolated_env(tmp_path)
    env.pop("VLLM_LAUNCH_RECIPES", None)
    result = run_cli(["recipes"], env)
    assert result.returncode == 2 and "vllm-project/recipes" in result.stderr
    env["VLLM_LAUNCH_RECIPES"] = str(RECIPES)
    assert run_cli(["recipes"], env).returncode == 0


@pytest.mark.vllm
@VLLM_PARSER_GROUP
def test_recipe_presets_parse_with_the_installed_vllm(tmp_path):
    """What a recipe becomes is a command the installed vLLM's own parser accepts (reasoning parser, JSON
    hf-overrides, quantization and all)."""
    env = isolated_env(tmp_path)
    argvs = {}
    for name, args in {"coder": [CODER, "--device", "cuda", "--gpus", "1", "--gpu-mem-gib", "16"],
                       "qwen3": ["Qwen/Qwen3-30B-A3B", "--device", "cpu", "--feature", "tool_calling",
                                 "--feature", "reasoning", "--feature", "long_context"]}.items():
        assert run_cli(["recipes", *args, "--dir", str(RECIPES), "--save", name], env).returncode == 0
        argvs[name] = render_json([name], env)["argv"][3:]
    verdicts = vllm_parse(argvs)
    assert all(v["ok"] for v in verdicts.values()), verdicts


def test_alias_bombs_deep_nesting_and_nan_are_refused_per_file(tmp_path):
    models = tmp_path / "models" / "x"
    models.mkdir(parents=True)
    bomb = 'a: &a ["x","x","x","x","x","x","x","x"]\n' + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 8)}]\n" for i in range(8))
    (models / "bomb.yaml").write_text(bomb + 'model: {model_id: "x/bomb"}\n')
    (models / "deep.yaml").write_text("model: " + "[" * 3000 + "]" * 3000 + "\n")
    (models / "nan.yaml").write_text('model: {model_id: "x/nan"}\nvariants: {d: {vram_minimum_gb: .nan}}\n')
    (models / "ok.yaml").write_text('model: {model_id: "x/ok", min_vllm_version: "0.30.0"}\n')
    result = run_cli(["recipes", "--dir", str(tmp_path), "--json"], isolated_env(tmp_path), timeout=30)
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert [r["model_id"] for r in json.loads(result.stdout)["recipes"]] == ["x/ok"]  # valid JSON, no NaN
    assert "aliases" in result.stderr and "nested more than" in result.stderr and "nan.yaml" in result.stderr


def test_dir_that_is_a_file_and_an_empty_variant_are_named(tmp_path):
    env = isolated_env(tmp_path)
    a_file = tmp_path / "file.yaml"
    a_file.write_text("x: 1\n")
    result = run_cli(["recipes", "--dir", str(a_file)], env)
    assert result.returncode == 2 and "not a directory" in result.stderr
    empty = run_cli(["recipes", CODER, "--dir", str(RECIPES), "--variant", ""], env)
    assert empty.returncode == 2 and "no variant ''" in empty.stderr


def test_a_recipe_that_loads_other_code_needs_trust_recipe(tmp_path):
    env = isolated_env(tmp_path)
    args = ["recipes", "Hostile/loader-env", "--dir", str(RECIPES), "--device", "cpu"]
    refused = run_cli([*args, "--save", "loader"], env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.count("\n") == 1
    for named in ("base_env LD_PRELOAD", "base_env PYTHONPATH", "base_env PATH", "--trust-remote-code",
                  "--trust-recipe", "loader-env.yaml"):
        assert named in refused.stderr, named
    assert "VLLM_USE_V1" not in refused.stderr  # vLLM's own settings are not a risk
    assert run_cli(["show", "loader"], env).returncode != 0  # nothing was saved
    accepted = run_cli([*args, "--save", "loader", "--trust-recipe"], env)
    assert accepted.returncode == 0, accepted.stderr
    assert "accepted with --trust-recipe: base_env LD_PRELOAD" in accepted.stderr
    preset = yaml.safe_load(accepted.stdout)
    assert preset["env"]["LD_PRELOAD"] == "/tmp/evil.so" and "--trust-remote-code" in preset["extra_args"]
    # A recipe with none of these needs no flag.
    assert run_cli(["recipes", CODER, "--dir", str(RECIPES), "--device", "cpu"], env).returncode == 0
