"""vLLM's model recipes (the vllm-project/recipes format: `models/<org>/<repo>.yaml`) as checked presets.

A recipe names the model, the least vLLM version, feature flags (tool calling, reasoning, long context),
VRAM variants (a precision, its minimum VRAM, sometimes another checkpoint) and overrides per hardware.
`to_preset` turns one into a Preset: flags that are preset fields become those fields, the rest
`extra_args` (through the preset's own validation: a hostile recipe is refused like a hostile preset).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vllm_launcher.base.errors import ConfigError

RECIPES_ENV = "VLLM_LAUNCH_RECIPES"  # the recipes checkout, for `recipes` and for fit's proposals
MAX_RECIPE_BYTES = 256 << 10

# Recipe flags that are preset fields: (preset field, how the value is read).
FIELD_ARGS: dict[str, tuple[str, Any]] = {
    "--max-model-len": ("max_model_len", int),
    "--gpu-memory-utilization": ("gpu_memory_utilization", float),
    "--tensor-parallel-size": ("tensor_parallel_size", int), "-tp": ("tensor_parallel_size", int),
    "--pipeline-parallel-size": ("pipeline_parallel_size", int),
    "--data-parallel-size": ("data_parallel_size", int), "--max-num-seqs": ("max_num_seqs", int),
    "--max-num-batched-tokens": ("max_num_batched_tokens", int), "--dtype": ("dtype", str),
    "--kv-cache-dtype": ("kv_cache_dtype", str), "--quantization": ("quantization", str),
    "--tool-call-parser": ("tool_calling.parser", str), "--served-model-name": ("served_model_name", str),
}
SWITCHES = {"--enable-auto-tool-choice": ("tool_calling.enabled", True),
            "--enforce-eager": ("enforce_eager", True)}

# What a recipe may set that runs someone else's code in vLLM's process or picks the programs it runs:
# never taken from a recipe without a word (`recipes --trust-recipe` accepts them, named).
RISKY_ENV = {
    "PATH": "chooses the programs vLLM runs", "PYTHONPATH": "puts other Python modules before vLLM's own",
    "PYTHONHOME": "changes the Python vLLM runs on", "PYTHONSTARTUP": "runs a Python file",
    "PYTHONUSERBASE": "adds Python modules", "PYTHONBREAKPOINT": "imports a module on breakpoint()",
    "PYTHONWARNINGS": "can import a module", "PYTHONINSPECT": "opens an interactive prompt",
    "PYTHONEXECUTABLE": "changes the interpreter", "BASH_ENV": "runs a script in every bash",
    "ENV": "runs a script in every sh", "NODE_OPTIONS": "loads code into node",
    "VLLM_PLUGINS": "loads vLLM plugins", "VLLM_ALLOW_INSECURE_SERIALIZATION": "lets vLLM unpickle data",
}
RISKY_ENV_PREFIXES = {"LD_": "changes the libraries every program loads (LD_PRELOAD: loads one into vLLM)",
                      "DYLD_": "changes the libraries every program loads"}
RISKY_ARGS = {
    "--trust-remote-code": "runs the Python code of the model's repository",
    "--worker-cls": "runs a class by import path", "--worker-extension-cls": "runs a class by import path",
    "--middleware": "imports code into the API server", "--tool-parser-plugin": "runs a Python file",
    "--logits-processors": "imports code by name",
}


def risky_settings(env: dict[str, str], args: list[str]) -> list[str]:
    """What in ENV and ARGS (a recipe's) loads or runs code beyond vLLM's own: one phrase each, e.g.
    "base_env LD_PRELOAD (changes the libraries ...)"; empty when nothing does."""
    found = []
    for name in env:
        why = RISKY_ENV.get(name) or next((w for p, w in RISKY_ENV_PREFIXES.items() if name.startswith(p)),
                                          None)
        if why:
            found.append(f"base_env {name} ({why})")
    for arg in dict.fromkeys(a.partition("=")[0] for a in args):
        if arg in RISKY_ARGS:
            found.append(f"{arg} ({RISKY_ARGS[arg]})")
    return found


class Variant(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    name: str
    precision: str = ""
    vram_minimum_gb: float | None = Field(default=None, gt=0, le=1_000_000)
    model_id: str | None = None  # a variant may serve another checkpoint (an FP8 or AWQ repo)
    description: str = ""
    args: list[str] = Field(default_factory=list)


class Recipe(BaseModel):
    model_id: str
    title: str = ""
    min_vllm_version: str | None = None
    context_length: int | None = None
    base_args: list[str] = Field(default_factory=list)
    base_env: dict[str, str] = Field(default_factory=dict)
    features: dict[str, list[str]] = Field(default_factory=dict)
    opt_in: list[str] = Field(default_factory=list)  # features not on unless asked for
    variants: list[Variant] = Field(default_factory=list)
    cpu_args: list[str] = Field(default_factory=list)
    source: str


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise ConfigError(f"{where} must be a list of strings")
    return [str(v) for v in value]


def _env(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, (str, int, float, bool))
                                              for k, v in value.items()):
        raise ValueError("model.base_env must map variable names to strings")
    return {k: str(v) for k, v in value.items()}


def _version(value: Any) -> str | None:
    from vllm_launcher.preset.flagtable import valid_version

    if value is None:
        return None
    if not valid_version(str(value)):
        raise ValueError(f"model.min_vllm_version {str(value)[:40]!r} is not a version")
    return str(value)


def load_recipe(path: Path) -> Recipe:
    """One recipe file; ConfigError (naming the file) when it is not a recipe."""
    import yaml

    from vllm_launcher.base.files import read_user_file
    from vllm_launcher.preset.yaml_files import check_yaml_shape

    text = read_user_file(path, max_bytes=MAX_RECIPE_BYTES, what="cannot read the recipe")
    # No aliases (an alias bomb), bounded nesting: checked on the event stream before anything is built.
    check_yaml_shape(text, path, yaml.SafeLoader, what="recipes", hint="write the values out")
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConfigError(f"not YAML: {' '.join(str(exc).split())[:120]}", source=path) from None
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or not isinstance(model.get("model_id"), str):
        raise ConfigError("not a vLLM recipe (no model.model_id)", source=path)
    try:
        features = {str(name): _strings((spec or {}).get("args"), f"features.{name}.args")
                    for name, spec in (data.get("features") or {}).items() if isinstance(spec, dict)}
        variants = [Variant(name=str(name), precision=str(spec.get("precision", "")),
                            vram_minimum_gb=spec.get("vram_minimum_gb"), model_id=spec.get("model_id"),
                            description=str(spec.get("description", "")),
                            args=_strings(spec.get("extra_args") or spec.get("args"),
                                          f"variants.{name}.args"))
                    for name, spec in (data.get("variants") or {}).items() if isinstance(spec, dict)]
        cpu = ((data.get("hardware_overrides") or {}).get("cpu") or {}).get("extra_args")
        return Recipe(model_id=model["model_id"], title=str((data.get("meta") or {}).get("title", "")),
                      min_vllm_version=_version(model.get("min_vllm_version")),
                      context_length=model.get("context_length"),
                      base_args=_strings(model.get("base_args"), "model.base_args"),
                      base_env=_env(model.get("base_env")),
                      features=features, opt_in=_strings(data.get("opt_in_features"), "opt_in_features"),
                      variants=variants, cpu_args=_strings(cpu, "hardware_overrides.cpu.extra_args"),
                      source=str(path))
    except (AttributeError, TypeError, ValueError) as exc:
        raise ConfigError(f"not a vLLM recipe: {str(exc).splitlines()[0]}", source=path) from None


def find_recipes(directory: Path) -> tuple[list[Recipe], list[str]]:
    """Every recipe under DIRECTORY (models/<org>/<repo>.yaml or any YAML with model.model_id), and one
    line per file that is not one."""
    if not directory.is_dir():
        what = "not a directory" if directory.exists() else "no such recipes directory"
        raise ConfigError(what, source=directory, field="--dir")
    found, broken = [], []
    for path in sorted(directory.rglob("*.yaml")):
        try:
            found.append(load_recipe(path))
        except ConfigError as exc:
            broken.append(str(exc))
    return found, broken


def recipe_for(model: str, directory: Path) -> Recipe:
    recipes, _ = find_recipes(directory)
    for recipe in recipes:
        if recipe.model_id.lower() == model.lower() or any(
                (v.model_id or "").lower() == model.lower() for v in recipe.variants):
            return recipe
    known = ", ".join(r.model_id for r in recipes[:12]) or "none"
    raise ConfigError(f"no recipe for {model!r} in {directory} (it has: {known})")


def choose_variant(recipe: Recipe, gpu_gib: float | None, wanted: str | None) -> Variant | None:
    """WANTED, else the most precise variant whose minimum VRAM this machine's GPUs hold (the recipe lists
    them from full precision down); None when the recipe has none."""
    if not recipe.variants:
        return None
    if wanted is not None:
        for variant in recipe.variants:
            if variant.name == wanted:
                return variant
        names = ", ".join(v.name for v in recipe.variants)
        raise ConfigError(f"no variant {wanted!r} (the recipe has {names})", field="--variant")
    if gpu_gib is None:
        return recipe.variants[0]
    fitting = [v for v in recipe.variants if v.vram_minimum_gb is None or v.vram_minimum_gb <= gpu_gib]
    if not fitting:
        need = min(v.vram_minimum_gb or 0 for v in recipe.variants)
        raise ConfigError(f"no variant of {recipe.model_id} fits {gpu_gib:.0f} GB of GPU memory (the "
                          f"smallest needs {need:g} GB)")
    return max(fitting, key=lambda v: v.vram_minimum_gb or 0)


def _apply(args: list[str], fields: dict[str, Any], extra: list[str], source: str) -> None:
    """Recipe ARGS into preset FIELDS (nested keys with a dot) and EXTRA (`--flag=value`)."""
    index = 0
    while index < len(args):
        arg = args[index]
        flag, _, inline = arg.partition("=")
        if flag in SWITCHES:
            field_name, switch = SWITCHES[flag]
            fields[field_name] = switch
            index += 1
            continue
        takes_value = not inline and index + 1 < len(args) and not args[index + 1].startswith("--")
        value = inline or (args[index + 1] if takes_value else None)
        index += 2 if takes_value else 1
        if flag in FIELD_ARGS and value is not None:
            key, kind = FIELD_ARGS[flag]
            try:
                fields[key] = kind(value)
            except ValueError:
                raise ConfigError(f"{flag} {value!r} is not a {kind.__name__}", source=source) from None
        elif flag.startswith("--") and flag != "--":
            extra.append(f"{flag}={value}" if value is not None else flag)
        else:
            raise ConfigError(f"unexpected argument {arg!r} (flags start with --)", source=source)


def chosen_features(recipe: Recipe, features: list[str] | None) -> list[str]:
    """FEATURES, else all of the recipe's but the opt-in ones."""
    return features if features is not None else [f for f in recipe.features if f not in recipe.opt_in]


def chosen_args(recipe: Recipe, variant: Variant | None, chosen: list[str], device: str) -> list[str]:
    """The vLLM arguments a preset from RECIPE gets: base, features, variant, CPU overrides."""
    return [*recipe.base_args, *(a for f in chosen if f in recipe.features for a in recipe.features[f]),
            *(variant.args if variant else []), *(recipe.cpu_args if device == "cpu" else [])]


def to_preset(recipe: Recipe, name: str, *, variant: Variant | None, features: list[str] | None,
              device: str = "cuda") -> Any:
    """The recipe as a Preset: base args, its features (all but the opt-in ones, or exactly FEATURES), the
    variant's args and checkpoint, the CPU overrides on device cpu. ConfigError when the result is not a
    valid preset (the preset's own checks: hostile flags, secrets on argv, field-flags in extra_args)."""
    from pydantic import ValidationError

    from vllm_launcher.preset.schema import Preset

    chosen = chosen_features(recipe, features)
    unknown = [f for f in chosen if f not in recipe.features]
    if unknown:
        raise ConfigError(f"no feature {', '.join(unknown)} (the recipe has {', '.join(recipe.features)})",
                          field="--feature")
    args = chosen_args(recipe, variant, chosen, device)
    fields: dict[str, Any] = {}
    extra: list[str] = []
    _apply(args, fields, extra, recipe.source)
    tool = {k.split(".", 1)[1]: fields.pop(k) for k in list(fields) if k.startswith("tool_calling.")}
    described = f", variant {variant.name}" if variant else ""
    description = (f"From the vLLM recipe {Path(recipe.source).name} ({recipe.title or recipe.model_id}"
                   f"{described}; features: {', '.join(chosen) or 'none'})")
    data: dict[str, Any] = {
        "name": name, "model": variant.model_id if variant and variant.model_id else recipe.model_id,
        "device": device, "description": description, "env": recipe.base_env, "extra_args": extra, **fields}
    if tool:
        data["tool_calling"] = tool
    try:
        return Preset.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"the recipe does not make a valid preset: {where}: {first['msg']}",
                          source=recipe.source) from None
