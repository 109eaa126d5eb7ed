"""The one table of vLLM tool-call parsers by model family, read by `fit` and by doctor (stdlib only).

The seed guide's table (hermes: Qwen/Hermes-style; mistral; llama3_json: Llama 3.1+; llama4_json;
deepseek_v3; qwen3_coder) plus the families vLLM's tool-calling docs name with their parser
(VLLM-NOTES.md). First match wins, on the lower-cased model id; the config's model_type is the fallback.
A family with parser None is known to have no tool calling we can render (its chat template lacks tools).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ParserFamily:
    pattern: str  # regex searched in the lower-cased model id
    parser: str | None
    family: str


FAMILIES: tuple[ParserFamily, ...] = (
    ParserFamily(r"qwen3.*coder", "qwen3_coder", "Qwen3-Coder"),
    ParserFamily(r"xlam", "xlam", "xLAM"),  # before llama: Salesforce/Llama-xLAM-*
    ParserFamily(r"hermes", "hermes", "Hermes"),  # before llama/mistral: Hermes-3-Llama-3.1,
                                                  # Hermes-2-Pro-Mistral
    ParserFamily(r"qwen|qwq", "hermes", "Qwen"),
    ParserFamily(r"llama-?4", "llama4_json", "Llama 4"),
    ParserFamily(r"llama-?3[._]?[1-9]", "llama3_json", "Llama 3.1+"),
    ParserFamily(r"llama-?3", None, "Llama 3.0"),  # 3.0's chat template has no tools; the guide says 3.1+
    ParserFamily(r"deepseek-v3[._]1", "deepseek_v31", "DeepSeek V3.1"),
    ParserFamily(r"deepseek-(v3|r1)", "deepseek_v3", "DeepSeek V3"),
    ParserFamily(r"deepseek", None, "DeepSeek"),  # DeepSeek-Coder-V2's chat template has no tool support
    ParserFamily(r"mistral|codestral|mixtral|ministral|devstral", "mistral", "Mistral"),
    ParserFamily(r"granite-?3", "granite", "Granite 3"),
    ParserFamily(r"internlm", "internlm", "InternLM"),
    ParserFamily(r"jamba", "jamba", "Jamba"),
    ParserFamily(r"kimi-k2", "kimi_k2", "Kimi K2"),
    ParserFamily(r"hunyuan-a13b", "hunyuan_a13b", "Hunyuan A13B"),
    ParserFamily(r"glm-4\.5", "glm45", "GLM-4.5"),
    ParserFamily(r"gpt-oss", "openai", "gpt-oss"),
    ParserFamily(r"phi-4-mini", "phi4_mini_json", "Phi-4-mini"),
)

# config.json model_type -> family name, when the id (a local directory, a fine-tune) names no family.
FAMILY_BY_MODEL_TYPE: dict[str, str] = {
    "qwen2": "Qwen", "qwen3": "Qwen", "qwen2_moe": "Qwen", "qwen3_moe": "Qwen", "llama4": "Llama 4",
    "deepseek_v3": "DeepSeek V3", "mistral": "Mistral", "mixtral": "Mistral",
}
_BY_FAMILY = {row.family: row for row in FAMILIES}


def lookup(model: str, arch: object | None = None) -> ParserFamily | None:
    """The family row for a model id (then `arch.model_type`), or None when no row matches."""
    name = model.lower()
    for row in FAMILIES:
        if re.search(row.pattern, name):
            return row
    model_type = (getattr(arch, "model_type", "") or "").lower()
    family = FAMILY_BY_MODEL_TYPE.get(model_type)
    return _BY_FAMILY[family] if family else None


def parser_for(model: str, arch: object | None = None) -> str | None:
    """The vLLM --tool-call-parser for a model, or None (family unknown, or without tool calling)."""
    row = lookup(model, arch)
    return row.parser if row else None


def family_of(model: str, arch: object | None = None) -> str | None:
    """The family's name as the guide writes it (e.g. "Llama 3.1+"), or None when unknown."""
    row = lookup(model, arch)
    return row.family if row else None
