"""The tiny demo model builder (run as vLLM's interpreter runs it: a subprocess) and demo.py around it."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_launcher import demo
from vllm_launcher.base.errors import LaunchError
from vllm_launcher.demo import tiny_model
from vllm_launcher.preset.schema import resolve

BUILDER = Path(tiny_model.__file__)
FIXTURES = Path(__file__).parent / "fixtures" / "tiny_configs"
LOGS = Path(__file__).parent / "fixtures" / "vllm_logs"
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]

# Builds a real model with torch, safetensors and tokenizers (the demo's builder): the real tier.
pytestmark = pytest.mark.vllm


def run_builder(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BUILDER), "--out", str(out), *extra], check=False,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build") / "tiny"
    result = run_builder(out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    return out


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_builds_every_file_and_nothing_else_beside(model_dir: Path) -> None:
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(tiny_model.REQUIRED_FILES)
    assert [p.name for p in model_dir.parent.iterdir()] == ["tiny"]  # no temp dir left behind
    assert stat.S_IMODE(model_dir.stat().st_mode) & 0o055  # not mkdtemp's private 0700


def test_config_is_a_small_gqa_qwen2(model_dir: Path) -> None:
    config = read_json(model_dir / "config.json")
    assert config["architectures"] == ["Qwen2ForCausalLM"]
    assert config["model_type"] == "qwen2"
    assert config["torch_dtype"] == "float32"
    assert (config["hidden_size"], config["num_hidden_layers"]) == (128, 2)
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (4, 2, 32)
    assert config["intermediate_size"] == 256
    assert config["max_position_embeddings"] == 4096
    assert config["tie_word_embeddings"] is True
    # The saved fixture is exactly what the builder makes (regenerate it with scripts/capture_vllm_logs.py).
    assert config == read_json(FIXTURES / "gqa.json")


def test_tokenizer_matches_config_and_round_trips(model_dir: Path) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    config = read_json(model_dir / "config.json")
    assert 2000 <= tokenizer.get_vocab_size(with_added_tokens=True) == config["vocab_size"] <= 8192
    for token in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"):
        assert tokenizer.token_to_id(token) is not None, token
    assert config["eos_token_id"] == tokenizer.token_to_id("<|im_end|>")
    text = 'Hello, world! def f(x):\n    return {"city": "Paris"}  é 😀 <tool_call>'
    ids = tokenizer.encode(text).ids
    assert len(ids) < len(text.encode())  # BPE merged something
    assert tokenizer.decode(ids, skip_special_tokens=False) == text
    # The tool-call tags are not "special": they survive skip_special_tokens, so the parser sees them.
    call = '<tool_call>\n{"name": "f"}\n</tool_call>'
    assert tokenizer.decode(tokenizer.encode(call).ids, skip_special_tokens=True) == call


def test_chat_template_renders_tools_hermes_style(model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
            "name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": '{"celsius": 21}'},
    ]
    text = tokenizer.apply_chat_template(messages, tools=TOOLS, tokenize=False, add_generation_prompt=True)
    assert "within <tools></tools> XML tags" in text
    tools_block = text[text.index("<tools>\n"):text.index("\n</tools>")]
    assert '"name": "get_weather"' in tools_block
    assert '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>' in text
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in text
    assert '<|im_start|>user\n<tool_response>\n{"celsius": 21}\n</tool_response><|im_end|>' in text
    assert text.endswith("<|im_start|>assistant\n")

    plain = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                          add_generation_prompt=True)
    assert "<tools>" not in plain
    assert plain.startswith("<|im_start|>system\n") and "<|im_start|>user\nHi<|im_end|>\n" in plain


def test_weights_are_float32_with_qwen2_names_and_deterministic(model_dir: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as f:
        names = set(f.keys())
        assert f.get_tensor("model.layers.0.self_attn.k_proj.weight").shape == (2 * 32, 128)
        assert f.get_tensor("model.layers.1.self_attn.q_proj.bias").shape == (4 * 32,)
        assert str(f.get_tensor("model.embed_tokens.weight").dtype) == "torch.float32"
    assert "lm_head.weight" not in names  # tied to the embeddings
    assert {"model.norm.weight", "model.layers.1.mlp.down_proj.weight"} <= names

    again = tmp_path / "again"
    assert run_builder(again).returncode == 0
    for name in tiny_model.REQUIRED_FILES:
        assert (again / name).read_bytes() == (model_dir / name).read_bytes(), name


def test_second_build_is_a_no_op(model_dir: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()}
    result = run_builder(model_dir)
    assert result.returncode == 0, result.stderr
    assert {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()} == before


def test_incomplete_directory_is_rebuilt(tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    out.mkdir()
    (out / "config.json").write_text("{}")  # an interrupted copy, say
    assert run_builder(out).returncode == 0
    assert tiny_model.is_complete(out)
    assert read_json(out / "config.json")["model_type"] == "qwen2"


def test_arch_overrides_make_the_mha_variant(tmp_path: Path) -> None:
    from safetensors import safe_open

    out = tmp_path / "mha"
    result = run_builder(out, "--arch", '{"num_key_value_heads": 4}')
    assert result.returncode == 0, result.stderr
    config = read_json(out / "config.json")
    assert config["num_key_value_heads"] == 4
    assert config == read_json(FIXTURES / "mha.json")
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert f.get_tensor("model.layers.0.self_attn.v_proj.weight").shape == (4 * 32, 128)


@pytest.mark.parametrize("arch", ["{not json", "[1, 2]", '{"head_dim": 64}'])
def test_bad_arch_is_a_usage_error(tmp_path: Path, arch: str) -> None:
    result = run_builder(tmp_path / "x", "--arch", arch)
    assert result.returncode == 2
    assert "--arch" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()


def test_captured_logs_hold_their_expected_text() -> None:
    """The saved real-vLLM logs (scripts/capture_vllm_logs.py) match their index and carry no home path."""
    index = read_json(LOGS / "index.json")
    assert len(index) >= 10
    for name, entry in index.items():
        text = (LOGS / f"{name}.log").read_text()
        assert entry["expect_text"] in text, name
        assert str(Path.home()) + "/" not in text, name
        assert entry["ready"] is entry["expect_ready"], name
    assert "CPU KV cache size: 1,048,576 tokens" in (LOGS / "ready_gqa.log").read_text()
    assert "CPU KV cache size: 524,288 tokens" in (LOGS / "ready_mha.log").read_text()


# ------------------------------------------------------------------------------------------ demo.py


def test_reserved_id() -> None:
    assert demo.is_demo_model("vllm-launch/tiny-qwen2")
    assert not demo.is_demo_model("Qwen/Qwen2.5-0.5B-Instruct")


def test_demo_dir_is_in_the_cache_and_named_by_the_builder_hash(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = demo.demo_model_dir()
    assert path.parent == tmp_path / "vllm-launch" / "models"
    assert path.name.startswith("tiny-qwen2-") and len(path.name) == len("tiny-qwen2-") + 12


def test_ensure_demo_model_builds_once(monkeypatch, demo_server) -> None:
    """The session's demo server has the model (built by `up demo`: tiny_model.py --tools, a minute or two
    of training, or copied from the one scripts/install.sh built): it is complete where demo_model_dir says,
    and never built again."""
    monkeypatch.setenv("XDG_CACHE_HOME", demo_server.env["XDG_CACHE_HOME"])
    path = demo.ensure_demo_model(sys.executable)
    assert path == demo.demo_model_dir() and tiny_model.is_complete(path)
    before = (path / "model.safetensors").stat().st_mtime_ns
    # Once built, no interpreter is needed at all.
    assert demo.ensure_demo_model("/nonexistent/python") == path
    assert (path / "model.safetensors").stat().st_mtime_ns == before


def test_python_m_demo_builds_nothing_when_the_model_is_there(demo_server) -> None:
    """`python -m vllm_launcher.demo` (what scripts/install.sh runs): with the model built, one line naming
    it, exit 0, and the files untouched."""
    cache = Path(demo_server.env["XDG_CACHE_HOME"])
    weights = next(cache.glob("vllm-launch/models/tiny-qwen2-*/model.safetensors"))
    before = weights.stat().st_mtime_ns
    done = subprocess.run([sys.executable, "-m", "vllm_launcher.demo"], env=demo_server.env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "the demo model is ready" in lines[0], done.stderr  # no build stage shown
    assert Path(lines[0].rsplit(": ", 1)[1]) == weights.parent
    assert weights.stat().st_mtime_ns == before


def test_ensure_demo_model_reports_a_failing_interpreter(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named torch' >&2\nexit 3\n")
    broken.chmod(0o755)
    with pytest.raises(LaunchError, match=r"exit 3.*No module named torch"):
        demo.ensure_demo_model(str(broken))
    with pytest.raises(LaunchError, match="interpreter not found"):
        demo.ensure_demo_model(str(tmp_path / "missing-python"))
    assert not demo.demo_model_dir().exists()


def test_demo_preset(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no user preset named demo shadows the built-in
    preset = resolve("demo").preset
    assert demo.is_demo_model(preset.model)
    assert preset.served_model_name == "demo" and preset.device == "cpu"
    assert (preset.dtype, preset.enforce_eager, preset.max_model_len) == ("float32", True, 2048)
    assert preset.kv_cache_space_gib == 1
    assert (preset.tool_calling.enabled, preset.tool_calling.parser) == (True, "hermes")
