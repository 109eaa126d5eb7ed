"""The one tool-call parser table (the seed guide's plus vLLM's documented families), used by fit and
doctor."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vllm_launcher.doctor import environment
from vllm_launcher.doctor.rules_preset import expected_parser
from vllm_launcher.machine import system
from vllm_launcher.memory.fit import tool_parser_for
from vllm_launcher.preset.tool_parsers import FAMILIES, family_of, parser_for

# (model id, parser or None for "no tool calling we know of"): the guide's rows first.
CASES = [
    ("Qwen/Qwen2.5-Coder-7B-Instruct", "hermes"),
    ("Qwen/QwQ-32B", "hermes"),
    ("NousResearch/Hermes-3-Llama-3.1-8B", "hermes"),
    ("mistralai/Codestral-22B-v0.1", "mistral"),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mistral"),
    ("meta-llama/Llama-3.1-8B-Instruct", "llama3_json"),
    ("meta-llama/Llama-3.2-3B-Instruct", "llama3_json"),
    ("meta-llama/Llama-3.3-70B-Instruct", "llama3_json"),
    ("meta-llama/Meta-Llama-3.1-8B-Instruct", "llama3_json"),
    ("meta-llama/Meta-Llama-3-8B-Instruct", None),  # Llama 3.0's template has no tools: the guide says 3.1+
    ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "llama4_json"),
    ("deepseek-ai/DeepSeek-V3", "deepseek_v3"),
    ("deepseek-ai/DeepSeek-R1-0528", "deepseek_v3"),
    ("deepseek-ai/DeepSeek-V3.1", "deepseek_v31"),
    ("deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct", None),
    ("Qwen/Qwen3-Coder-30B-A3B-Instruct", "qwen3_coder"),
    ("Qwen/Qwen3-8B", "hermes"),
    ("ibm-granite/granite-3.1-8b-instruct", "granite"),
    ("internlm/internlm2_5-7b-chat", "internlm"),
    ("ai21labs/AI21-Jamba-1.5-Mini", "jamba"),
    ("Salesforce/Llama-xLAM-2-8b-fc-r", "xlam"),
    ("moonshotai/Kimi-K2-Instruct", "kimi_k2"),
    ("tencent/Hunyuan-A13B-Instruct", "hunyuan_a13b"),
    ("zai-org/GLM-4.5", "glm45"),
    ("openai/gpt-oss-20b", "openai"),
    ("microsoft/Phi-4-mini-instruct", "phi4_mini_json"),
    ("bigcode/starcoder2-15b", None),
]


@pytest.mark.parametrize(("model", "parser"), CASES)
def test_parser_for_model_family(model, parser):
    assert parser_for(model) == parser


@pytest.mark.parametrize(("model", "parser"), CASES)
def test_fit_and_doctor_read_the_same_table(model, parser):
    assert tool_parser_for(model) == parser
    guess = expected_parser(model)
    assert (guess[0] if guess else None) == parser


@pytest.mark.vllm  # reads the installed vLLM
def test_every_parser_is_registered_in_the_installed_vllm():
    installed = environment.tool_parsers(system.vllm_info().package_dir)
    assert installed, "could not read the installed vLLM's tool parsers"
    assert {f.parser for f in FAMILIES if f.parser} <= installed


def test_model_type_is_the_fallback_when_the_id_says_nothing():
    class Arch:
        model_type = "qwen2"

    assert parser_for("/models/my-finetune", Arch()) == "hermes"
    assert family_of("/models/my-finetune", Arch()) == "Qwen"
    assert parser_for("/models/my-finetune") is None and family_of("/models/my-finetune") is None


def test_family_names():
    assert family_of("meta-llama/Llama-3.3-70B-Instruct") == "Llama 3.1+"
    assert family_of("meta-llama/Meta-Llama-3-8B-Instruct") == "Llama 3.0"


def test_import_is_cheap():
    code = ("import sys, vllm_launcher.preset.tool_parsers; print(sorted(m for m in sys.modules "
            "if m.startswith(('pydantic', 'yaml', 'torch', 'vllm.'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
