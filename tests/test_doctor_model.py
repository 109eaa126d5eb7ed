"""VL124: a `model:` vLLM cannot open is refused before launch, by doctor and by `up`, with the path and the
fix. Real directories and files in tmp_path; what vLLM prints for each case is in
tests/fixtures/vllm_logs/model_*.log (test_doctor_logs explains them)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from cli_helpers import isolated_env, run_cli

from vllm_launcher.doctor.rules_model import looks_like_path, repo_id_problem, source_problem


def _model_dir(root: Path, name: str) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "config.json").write_text("{}")
    return directory


def test_an_existing_model_directory_and_repo_ids_pass(tmp_path):
    assert source_problem(str(_model_dir(tmp_path, "Qwen2.5-7B-Instruct"))) is None
    mistral = tmp_path / "mistral"
    mistral.mkdir()
    (mistral / "params.json").write_text("{}")
    assert source_problem(str(mistral)) is None
    for repo in ("Qwen/Qwen2.5-7B-Instruct", "gpt2", "meta-llama/Llama-3.3-70B-Instruct", "s3://bucket/model"):
        assert source_problem(repo) is None, repo


def test_a_path_that_does_not_exist_names_it_and_the_close_match(tmp_path):
    _model_dir(tmp_path, "Qwen2.5-7B-Instruct")
    hit = source_problem(str(tmp_path / "qwen2.5-7b-instruct"))
    assert str(tmp_path / "qwen2.5-7b-instruct") + " does not exist" in hit.message
    assert "HFValidationError" in hit.message  # what vLLM would print instead, ~10 s later
    assert f"did you mean {tmp_path / 'Qwen2.5-7B-Instruct'}?" in hit.fix
    deeper = source_problem(str(tmp_path / "nowhere" / "models" / "qwen"))
    assert f"the nearest directory that exists, {tmp_path}, has no 'nowhere'" in deeper.fix


def test_a_relative_path_and_a_tilde(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "./models/qwen does not exist" in source_problem("./models/qwen").message
    _model_dir(tmp_path, "models/qwen")
    assert source_problem("./models/qwen") is None
    monkeypatch.setenv("HOME", str(tmp_path))
    hit = source_problem("~/models/qwen")  # it exists, but vLLM is handed the '~' as written
    assert "starts with '~', which nothing expands" in hit.message
    assert hit.fix == f"write the full path: model: {tmp_path}/models/qwen"
    elsewhere = source_problem("~/models/qwen", local=False)  # wrong on every machine
    assert elsewhere is not None and "full path" in elsewhere.fix


def test_a_file_or_a_directory_without_config_json(tmp_path):
    model = _model_dir(tmp_path, "m")
    as_file = source_problem(str(model / "config.json"))
    assert "is a file, not a model directory" in as_file.message and as_file.fix == f"model: {model}"
    hit = source_problem(str(tmp_path))  # the folder above the model
    assert "directory without config.json" in hit.message and f"model: {model}" in hit.fix
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "the directory that holds config.json" in source_problem(str(empty)).fix


@pytest.mark.parametrize(("name", "words"), [
    ("qwen2.5-coder:7b", "Ollama tag"), ("my model", "only letters"), ("org--x/model", "'--' or '..'"),
    ("org/model.git", ".git"), ("-leading/dash", "only letters"), ("a" * 97, "96 characters"),
])
def test_names_huggingface_hub_refuses_as_repo_ids(name, words):
    hit = source_problem(name, local=False)  # no path involved: refused on any machine
    assert hit is not None and words in hit.message + hit.fix
    assert "neither a local directory nor a Hugging Face repo id" in hit.message


# (name, a valid repo id) as huggingface_hub's validate_repo_id decides (utils/_validators.py).
REPO_IDS = [("Qwen/Qwen2.5-7B-Instruct", True), ("gpt2", True), ("a/b/c", False), ("x:y", False),
            ("a--b", False), ("a..b", False), ("x.git", False), ("-a", False), ("a-", False), (".a", False),
            ("ns/" + "n" * 96, True), ("ns/" + "n" * 97, False), ("ü/model", False), ("a b", False),
            ("", False), ("/abs", False), ("org/", False), ("Org_1/name.v2", True)]


def test_repo_id_rules_follow_huggingface_hub():
    for name, valid in REPO_IDS:
        assert (repo_id_problem(name) is None) == valid, name
    if importlib.util.find_spec("huggingface_hub") is not None:  # the rules themselves, where installed
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        for name, valid in REPO_IDS:
            try:
                validate_repo_id(name)
                theirs = True
            except HFValidationError:
                theirs = False
            assert theirs == valid, name


def test_a_path_on_another_machine_is_not_judged_here():
    assert source_problem("/srv/models/qwen", local=False) is None
    assert looks_like_path("/srv/models/qwen") and looks_like_path("a/b/c") and not looks_like_path("a/b")


def test_offline_with_a_repo_that_is_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    offline = {"HF_HUB_OFFLINE": "1"}
    hit = source_problem("nosuch-org/nosuch-model", env=offline)
    assert "HF_HUB_OFFLINE is set and nosuch-org/nosuch-model is not in the Hugging Face cache" in hit.message
    (tmp_path / "hub" / "models--nosuch-org--nosuch-model" / "snapshots").mkdir(parents=True)
    assert source_problem("nosuch-org/nosuch-model", env=offline) is None
    assert source_problem("nosuch-org/other", env={}) is None  # online: the hub decides


def test_doctor_and_up_refuse_a_missing_model_path_before_launch(tmp_path):
    env = isolated_env(tmp_path)
    _model_dir(tmp_path, "models/Qwen2.5-7B-Instruct")
    typo = str(tmp_path / "models" / "qwen2.5-7b-instruct")
    done = run_cli(["doctor", "demo", "--set", f"model={typo}", "--json"], env)
    assert done.returncode == 1, done.stderr
    found = {f["code"]: f for f in json.loads(done.stdout)["findings"]}
    assert found["VL124"]["severity"] == "error" and typo in found["VL124"]["message"]
    assert "did you mean" in found["VL124"]["fix"]
    assert "VL190" not in found  # the one finding says why, not a second "architecture unknown"
    up = run_cli(["up", "demo", "--set", f"model={typo}"], env)
    assert up.returncode == 1 and "not starting demo: VL124" in up.stderr and typo in up.stderr
    assert "Traceback" not in up.stderr and up.stderr.count("\n") == 1
    assert not list((Path(env["XDG_STATE_HOME"]) / "vllm-launch" / "logs").glob("*.log"))  # nothing ran
