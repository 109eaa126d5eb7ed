"""Presets: the `Preset` schema, YAML loading with file:line in errors, `extends`, and overrides.

A preset is a YAML mapping whose keys follow vLLM's flag names (`max_model_len` is `--max-model-len`).
Built-in presets ship with the package; user presets in `$XDG_CONFIG_HOME/vllm-launch/presets/` replace
built-ins of the same name; any path to a YAML file works wherever a preset name is expected.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    field_validator,
)

from vllm_launcher.base import paths
from vllm_launcher.base.errors import ConfigError
from vllm_launcher.base.inputs import ALIAS_NAME, PRESET_NAME, SERVED_NAME, NameKind, name_problem
from vllm_launcher.base.safe_text import check_host, check_not_option, check_plain
from vllm_launcher.preset.yaml_files import Provenance, load_yaml_mapping

Origin = Literal["builtin", "user", "file"]

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Bounds that no real launch comes near; past them a value is a typo (or an attack on the arithmetic).
MAX_GPUS = 4096
MAX_TOKENS = 1 << 31  # vLLM keeps token counts in int32
MAX_KV_GIB = 1 << 20
MAX_EXTENDS_DEPTH = 32
# Secrets never live in a preset: these come from the environment through api_key_env / hf_token_env.
SECRET_ENV_NAMES = {"VLLM_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"}


def _check_env_name(name: str) -> str:
    if not re.fullmatch(ENV_NAME[1:-1], name):
        raise ValueError(f"{name!r} is not a valid environment variable name")
    if name in SECRET_ENV_NAMES:
        raise ValueError(f"{name} is a secret and must not be written in a preset; "
                         "use api_key_env / hf_token_env (the name of a variable that holds it)")
    if name == "VLLM_CPU_KVCACHE_SPACE":
        raise ValueError("set kv_cache_space_gib instead of VLLM_CPU_KVCACHE_SPACE")
    return name


def _check_env_value(value: str) -> str:
    # The one character no environment can hold; everything else is quoted by each format's serializer.
    if "\0" in value:
        raise ValueError("contains NUL (U+0000), which no environment variable can hold")
    return value


# vLLM 0.32's `--quantization` choices (vllm/model_executor/layers/quantization/__init__.py,
# QuantizationMethods; tests/test_vllm_parser.py compares them with the installed vLLM's). bitsandbytes and
# gguf are gone from this list in 0.32: vLLM reads those from the checkpoint's own quantization_config.
QUANTIZATION_METHODS = (
    "awq", "auto_awq", "fp8", "fbgemm_fp8", "fp_quant", "modelopt", "modelopt_fp4", "modelopt_mxfp8",
    "modelopt_mixed", "auto_gptq", "gptq", "gptq_marlin", "awq_marlin", "humming", "compressed-tensors",
    "experts_int8", "quark", "moe_wna16", "torchao", "inc", "mxfp4", "gpt_oss_mxfp4", "deepseek_v4_fp8",
    "online", "fp8_per_tensor", "fp8_per_block", "fp8_per_channel", "int8_per_channel_weight_only",
    "nvfp4_per_token", "mxfp8",
)

# vLLM flags that preset fields render: in extra_args they would repeat or contradict the field (and the
# checks that read the field, e.g. the port), so they are refused with the field to set instead.
FIELD_FLAGS = {
    "--model": "model", "--served-model-name": "served_model_name", "--host": "host", "--port": "port",
    "--enable-auto-tool-choice": "tool_calling.enabled", "--tool-call-parser": "tool_calling.parser",
    "--dtype": "dtype", "--enforce-eager": "enforce_eager", "--max-model-len": "max_model_len",
    "--max-num-batched-tokens": "max_num_batched_tokens", "--max-num-seqs": "max_num_seqs",
    "--enable-chunked-prefill": "enable_chunked_prefill",
    "--no-enable-chunked-prefill": "enable_chunked_prefill",
    "--gpu-memory-utilization": "gpu_memory_utilization", "--tensor-parallel-size": "tensor_parallel_size",
    "--pipeline-parallel-size": "pipeline_parallel_size", "--kv-cache-dtype": "kv_cache_dtype",
    "--kv-cache-memory-bytes": "kv_cache_space_gib", "--quantization": "quantization",
    "--data-parallel-size": "data_parallel_size",
    # Aliases and negations vLLM 0.32's parser accepts for the same settings.
    "--no-enable-auto-tool-choice": "tool_calling.enabled", "--no-enforce-eager": "enforce_eager",
    "--device-memory-utilization": "gpu_memory_utilization",
    "--enable-sleep-mode": "sleep_when_idle",
}
# Secrets on argv are visible to every user of the machine (ps, /proc): they come from the environment.
SECRET_FLAGS = {"--api-key": "api_key_env", "--hf-token": "hf_token_env"}
# `--config FILE` makes vLLM read more flags from a file, where they would bypass every check above.
REFUSED_FLAGS = {"--config": "it reads further flags from a file, out of reach of the preset's checks "
                             "(port, host, secrets); set the preset fields or write the flags in extra_args"}


def vllm_flag_name(arg: str) -> str:
    """The flag vLLM's parser sees in ARG: the part before `=` and before any `.` (nested JSON keys), with
    `_` read as `-` (vllm.utils.argparse_utils.FlexibleArgumentParser, vLLM 0.32)."""
    key = arg.split("=", 1)[0]
    return "--" + key[2:].split(".", 1)[0].replace("_", "-")


def _abbreviates(flag: str, known: dict[str, str]) -> str | None:
    """The known flag that FLAG names, exactly or as argparse's unambiguous prefix (vLLM's parser keeps
    allow_abbrev on: `--api-ke` is `--api-key`); no real vLLM flag is a strict prefix of these."""
    if flag in known:
        return flag
    if len(flag) > 3:
        for full in known:
            if full.startswith(flag):
                return full
    return None


def _check_flag(arg: str) -> str:
    check_plain(arg)
    if not arg.startswith("--") or arg == "--":
        raise ValueError(f"{arg!r} must start with '--' (write a value as --flag=value)")
    flag = vllm_flag_name(arg)
    written = arg.split("=", 1)[0]
    secret = _abbreviates(flag, SECRET_FLAGS)
    if secret:
        same = "" if secret == written else f" (vLLM reads it as {secret})"
        raise ValueError(f"{written}{same} would put a secret on the command line; set "
                         f"{SECRET_FLAGS[secret]} to the name of an environment variable that holds it")
    field_flag = _abbreviates(flag, FIELD_FLAGS)
    if field_flag:
        same = "" if field_flag == written else f" (vLLM reads it as {field_flag})"
        raise ValueError(f"{written}{same} is the preset field `{FIELD_FLAGS[field_flag]}`; set that instead")
    refused = _abbreviates(flag, REFUSED_FLAGS)
    if refused:
        raise ValueError(f"{refused} is not allowed in extra_args: {REFUSED_FLAGS[refused]}")
    return arg


EnvName = Annotated[str, AfterValidator(_check_env_name)]
EnvValue = Annotated[str, AfterValidator(_check_env_value)]
VllmFlag = Annotated[str, AfterValidator(_check_flag)]
# Text that reaches argv, scripts and manifests: no control characters, never taken for a flag.
ArgText = Annotated[str, AfterValidator(check_plain), AfterValidator(check_not_option)]


def _named(kind: NameKind) -> PlainValidator:
    """inputs.name_problem as a field's validator: the one message for every kind of name. YAML's numbers
    (`served_model_name: 7`, `--set served_model_name=1111`) are names too, as their text."""
    def check(value: Any) -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        problem = name_problem(value, kind)
        if problem:
            raise ValueError(problem)
        return str(value)

    return PlainValidator(check)


PresetName = Annotated[str, _named(PRESET_NAME)]
ServedName = Annotated[str, _named(SERVED_NAME)]
AliasName = Annotated[str, _named(ALIAS_NAME)]
Host = Annotated[str, AfterValidator(check_host)]


def _duration(value: object) -> int:
    from vllm_launcher.base.inputs import parse_duration

    return round(parse_duration(value))


# Seconds, written as 90, "90s", "10m" or "2h" (inputs.parse_duration).
Duration = Annotated[int, BeforeValidator(_duration)]


class ToolCalling(BaseModel):
    """`--enable-auto-tool-choice --tool-call-parser PARSER`."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    parser: ArgText | None = Field(default=None, min_length=1)


class Preset(BaseModel):
    """A whole vLLM launch. Unset optional fields mean "vLLM's default" and render no flag."""

    # NaN and infinities pass range checks (every comparison with NaN is false): refuse them outright.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: PresetName
    description: Annotated[str, AfterValidator(lambda v: check_plain(v, allow="\n\t"))] = ""
    extends: str | None = None
    model: ArgText = Field(min_length=1)
    served_model_name: ServedName | None = None
    device: Literal["cuda", "cpu"] = "cuda"
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] | None = None
    tensor_parallel_size: int | None = Field(default=None, ge=1, le=MAX_GPUS)
    pipeline_parallel_size: int | None = Field(default=None, ge=1, le=MAX_GPUS)
    # Replicas of the whole TP x PP engine behind one API server (`--data-parallel-size`).
    data_parallel_size: int | None = Field(default=None, ge=1, le=MAX_GPUS)
    # vLLM's `--quantization`: how the weights are stored or quantized on load (online fp8 halves bf16).
    quantization: Literal[QUANTIZATION_METHODS] | None = None  # type: ignore[valid-type]
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    max_model_len: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    max_num_batched_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    max_num_seqs: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    enable_chunked_prefill: bool | None = None
    enforce_eager: bool = False
    kv_cache_dtype: Literal["auto", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2"] | None = None
    kv_cache_space_gib: int | None = Field(default=None, ge=1, le=MAX_KV_GIB)
    tool_calling: ToolCalling = Field(default_factory=ToolCalling)
    host: Host = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    api_key_env: str | None = Field(default=None, pattern=ENV_NAME)
    hf_token_env: str | None = Field(default=None, pattern=ENV_NAME)
    python: ArgText | None = Field(default=None, min_length=1)
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)
    extra_args: list[VllmFlag] = Field(default_factory=list)
    # Multi-node layout (render --format lws|ray): TP x PP must equal nodes x gpus_per_node.
    nodes: int = Field(default=1, ge=1, le=MAX_GPUS)
    gpus_per_node: int | None = Field(default=None, ge=1, le=MAX_GPUS)
    # Size of the client's fixed prompt (system prompt + tool schemas), for doctor's context check.
    client_prompt_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
    # The gateway (`vllm-launch gateway`): other names clients may ask for, never evict it (keep_loaded),
    # stop (or, on GPU with sleep_when_idle, sleep) after idle_timeout without requests (None: the
    # gateway's --idle; 0: never), requests allowed to wait for a cold start, and the GPUs it may use.
    aliases: list[AliasName] = Field(default_factory=list)
    keep_loaded: bool = False
    idle_timeout: Duration | None = None
    sleep_when_idle: bool = False
    max_waiting: int = Field(default=64, ge=0, le=100_000)
    gpus: list[Annotated[int, Field(ge=0, le=MAX_GPUS)]] | None = None

    @property
    def engine_gpus(self) -> int:
        """GPUs (or CPU workers) one engine uses: TP x PP."""
        return (self.tensor_parallel_size or 1) * (self.pipeline_parallel_size or 1)

    @property
    def gpus_needed(self) -> int:
        """GPUs (or CPU workers) the whole launch uses: DP x TP x PP."""
        return (self.data_parallel_size or 1) * self.engine_gpus

    @field_validator("aliases", "gpus")
    @classmethod
    def _distinct(cls, value: list | None) -> list | None:
        repeated = sorted({str(v) for v in value or [] if (value or []).count(v) > 1})
        if repeated:
            raise ValueError(f"names {', '.join(repeated)} more than once")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env_values_are_strings(cls, value: Any) -> Any:
        # YAML turns `8` into an int; env values are strings, so accept scalars and stringify them.
        if isinstance(value, dict):
            return {k: (str(v).lower() if isinstance(v, bool) else str(v)) if v is not None else v
                    for k, v in value.items()}
        return value


PRESET_FIELDS: tuple[str, ...] = tuple(Preset.model_fields)
NESTED_FIELDS = {"tool_calling": tuple(ToolCalling.model_fields)}
# Mappings whose keys are free-form (`--set env.FOO=bar`).
FREE_MAPPINGS = {"env"}


# Plain dataclasses, not models: they hold already-validated values, and each pydantic model costs
# start-up time on the hot `render` path.
@dataclass(frozen=True)
class ResolvedPreset:
    """A preset after `extends` and overrides, with where it came from."""

    preset: Preset
    source: str
    origin: Origin
    chain: list[str] = field(default_factory=list)  # the files it was built from, child first


@dataclass(frozen=True)
class PresetEntry:
    """One row of `vllm-launch presets`."""

    name: str
    source: str
    origin: Origin
    preset: Preset | None = None
    error: str | None = None


# ------------------------------------------------------------------------------------------ finding


def _is_path(ref: str) -> bool:
    return "/" in ref or ref.endswith((".yaml", ".yml")) or ref.startswith(".")


def _dir_presets(directory: Path) -> dict[str, Path]:
    if not directory.is_dir():
        return {}
    found: dict[str, Path] = {}
    for pattern in ("*.yaml", "*.yml"):
        for path in directory.glob(pattern):
            found.setdefault(path.stem, path)
    return found


def known_presets() -> dict[str, tuple[Path, Origin]]:
    """Every named preset: built-ins, then user presets of the same name replacing them."""
    found: dict[str, tuple[Path, Origin]] = {
        name: (path, "builtin") for name, path in _dir_presets(paths.builtin_presets_dir()).items()
    }
    for name, path in _dir_presets(paths.user_presets_dir()).items():
        found[name] = (path, "user")
    return dict(sorted(found.items()))


def find_preset(ref: str, *, skip: Path | None = None) -> tuple[Path, Origin]:
    """A preset name or a path to a YAML file → (file, origin). `skip`: a file that may not be the answer
    (a user preset that extends the built-in of its own name)."""
    if _is_path(ref):
        return Path(ref), "file"
    user = _dir_presets(paths.user_presets_dir()).get(ref)
    if user is not None and user != skip:
        return user, "user"
    builtin = _dir_presets(paths.builtin_presets_dir()).get(ref)
    if builtin is not None and builtin != skip:
        return builtin, "builtin"
    names = list(known_presets())
    close = difflib.get_close_matches(ref, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ConfigError(
        f"unknown preset {ref!r}; {hint}known presets: {', '.join(names) or '(none)'} "
        "(or give a path to a YAML file)"
    )


# ---------------------------------------------------------------------------------------- resolving


def _merge(
    parent: dict[str, Any], child: dict[str, Any], parent_lines: Provenance, child_lines: Provenance
) -> tuple[dict[str, Any], Provenance]:
    merged = dict(parent)
    lines = dict(parent_lines)
    for key, value in child.items():
        if key in ("tool_calling", "env") and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
            # A key replaced by the child takes the child's lines for itself and everything under it.
            lines = {path: where for path, where in lines.items() if path[0] != key}
    lines.update(child_lines)
    return merged, lines


def _load_with_parents(path: Path, origin: Origin, seen: list[Path]) -> tuple[dict, Provenance, list[str]]:
    import os

    resolved = Path(os.path.realpath(path))  # never raises, even on a symlink loop (read refuses those)
    if len(seen) >= MAX_EXTENDS_DEPTH:
        raise ConfigError(f"`extends` chain deeper than {MAX_EXTENDS_DEPTH} presets", source=path,
                          field="extends")
    if resolved in seen:
        cycle = " -> ".join(str(p) for p in [*seen, resolved])
        raise ConfigError(f"`extends` cycle: {cycle}", source=path, field="extends")
    data, lines = load_yaml_mapping(path)
    if origin != "file":
        stated = data.get("name")
        if stated is not None and stated != path.stem:
            raise ConfigError(
                f"name {stated!r} differs from the file name; a preset in a presets directory is named "
                f"after its file ({path.stem!r})",
                source=path, line=lines.get(("name",), (None, None))[1], field="name",
            )
    data.setdefault("name", path.stem)
    parent_ref = data.pop("extends", None)
    if parent_ref is None:
        return data, lines, [str(path)]
    if not isinstance(parent_ref, str) or not parent_ref:
        raise ConfigError("must be the name of another preset or a path to one",
                          source=path, line=lines[("extends",)][1], field="extends")
    try:
        parent_origin: Origin
        if _is_path(parent_ref) and not Path(parent_ref).is_absolute():
            parent_path, parent_origin = path.parent / parent_ref, "file"
            if not parent_path.is_file():
                raise ConfigError(f"parent preset file {parent_ref!r} not found")
        else:
            parent_path, parent_origin = find_preset(parent_ref, skip=path)
    except ConfigError as exc:
        raise ConfigError(exc.message, source=path, line=lines[("extends",)][1], field="extends") from None
    parent, parent_lines, chain = _load_with_parents(parent_path, parent_origin, [*seen, resolved])
    parent.pop("name", None)  # a child is never named after its parent
    merged, merged_lines = _merge(parent, data, parent_lines, lines)
    return merged, merged_lines, [str(path), *chain]


Override = tuple[str, str, Any]  # (where it came from, e.g. "--port"; dotted field; value)


def _apply_overrides(
    data: dict[str, Any], lines: Provenance, overrides: list[Override]
) -> tuple[dict[str, Any], Provenance]:
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    lines = dict(lines)
    settable = [f for f in PRESET_FIELDS if f not in ("name", "extends")]
    for label, dotted, value in overrides:
        parts = dotted.split(".")
        head = parts[0]
        valid_keys = ", ".join(settable + [f"{k}.{sub}" for k, subs in NESTED_FIELDS.items() for sub in subs]
                               + ["env.NAME"])
        if head not in settable:
            close = difflib.get_close_matches(head, settable, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"unknown key{hint}; valid keys: {valid_keys}", source=label.split()[0],
                              field=dotted)
        if len(parts) == 1:
            data[head] = value
        elif len(parts) == 2 and (head in FREE_MAPPINGS or parts[1] in NESTED_FIELDS.get(head, ())):
            nested = data.get(head)
            data[head] = {**(nested if isinstance(nested, dict) else {}), parts[1]: value}
        else:
            raise ConfigError(f"unknown key; valid keys: {valid_keys}", source=label.split()[0], field=dotted)
        lines = {path: where for path, where in lines.items() if path[: len(parts)] != tuple(parts)}
        lines[tuple(parts)] = (label, None)
    return data, lines


# The error worth reading first: a misspelt key explains a "missing" one (`modle:` leaves `model` unset).
_ERROR_PRIORITY = {"extra_forbidden": 0, "missing": 2}


def _shown(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _validation_error(exc: ValidationError, lines: Provenance, fallback_source: str) -> ConfigError:
    errors = exc.errors()
    error = min(errors, key=lambda e: _ERROR_PRIORITY.get(e["type"], 1))
    loc = tuple(str(part) for part in error["loc"] if part != "[key]")
    field = ".".join(loc) if loc else None
    where = None
    for depth in range(len(loc), 0, -1):
        where = lines.get(loc[:depth])
        if where:
            break
    source, line = where if where else (fallback_source, None)
    if error["type"] == "extra_forbidden":
        parent = loc[:-1]
        valid = NESTED_FIELDS.get(parent[0], ()) if parent else PRESET_FIELDS
        close = difflib.get_close_matches(loc[-1], list(valid), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        message = f"unknown key{hint}; valid keys: {', '.join(valid)}"
    elif error["type"] == "missing":
        message = "required and not set"
    else:
        message = error["msg"]
        message = message.removeprefix("Value error, ")
        got = error.get("input")
        if not isinstance(got, (dict, list)) and error["type"] != "value_error":
            message = f"{message} (got {_shown(got)})"
    return ConfigError(message, source=source, line=line, field=field)


def build_preset(data: dict[str, Any], overrides: list[Override], source: str,
                 lines: Provenance | None = None) -> Preset:
    """Raw preset fields (with the line of each, when they came from files) plus overrides → a validated
    preset; errors name the file and line, or the option, they came from. Raises ConfigError."""
    data, lines = _apply_overrides(data, lines or {}, overrides)
    try:
        return Preset.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, lines, source) from None


def resolve(ref: str, overrides: list[Override] | None = None) -> ResolvedPreset:
    """A preset name or path, plus overrides → a validated preset. Raises ConfigError."""
    path, origin = find_preset(ref)
    data, lines, chain = _load_with_parents(path, origin, [])
    preset = build_preset(data, overrides or [], str(path), lines)
    return ResolvedPreset(preset=preset, source=str(path), origin=origin, chain=chain)


def list_presets() -> list[PresetEntry]:
    """Every named preset, resolved; a broken one is listed with its error instead of stopping the list."""
    entries = []
    for name, (path, origin) in known_presets().items():
        try:
            entries.append(PresetEntry(name=name, source=str(path), origin=origin,
                                       preset=resolve(str(path) if origin == "file" else name).preset))
        except ConfigError as exc:
            entries.append(PresetEntry(name=name, source=str(path), origin=origin, error=str(exc)))
    return entries


def preset_as_yaml(preset: Preset) -> str:
    """The preset as YAML in field order, leaving out unset optional fields (vLLM's defaults)."""
    data = preset.model_dump(exclude_none=True, exclude={"extends"})
    defaults = Preset.model_construct()
    for key in ("env", "extra_args"):
        if not data.get(key):
            data.pop(key, None)
    for key in ("enforce_eager", "nodes"):  # defaults that say nothing; host and port stay visible
        if data.get(key) == Preset.model_fields[key].default:
            data.pop(key)
    if data.get("tool_calling") == defaults.tool_calling.model_dump(exclude_none=True):
        data.pop("tool_calling")
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
