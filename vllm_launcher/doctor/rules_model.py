"""VL124: a `model:` vLLM cannot open, found before launch (a few stat calls, no hub access).

vLLM takes `--model` as a local path when `os.path.exists` says so, else as a Hugging Face repo id
(vllm/transformers_utils/repo_utils.py `get_model_path`); nothing expands `~` (no shell runs it). So a
mistyped `/srv/models/qwen` reaches huggingface_hub as a repo id and dies ~10 s later with
`HFValidationError: Repo id must be in the form 'repo_name' or 'namespace/repo_name'`, a directory
without config.json with `Invalid repository ID or local directory specified`, and an uncached repo id
offline with `LocalEntryNotFoundError` (tests/fixtures/vllm_logs/model_*.log). The log side of the same
failures is doctor.logs VL533.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

from vllm_launcher.doctor.findings import Facts, Hit

# Streamed from object storage by vLLM's run:ai loader: not a path here, not a repo id.
REMOTE_PREFIXES = ("s3://", "gs://", "gcs://", "az://", "abfs://", "hf://")
# huggingface_hub's REPO_ID_REGEX (utils/_validators.py): an optional namespace, then a name.
REPO_ID = re.compile(r"(\b[\w\-.]{1,96}\b/)?\b[\w\-.]{1,96}\b", re.ASCII)
CONFIG_FILES = ("config.json", "params.json")  # HF format, Mistral format
MAX_LISTED = 2000  # entries of a directory looked at for a "did you mean"


def repo_id_problem(model: str) -> str | None:
    """Why huggingface_hub's validate_repo_id refuses MODEL as a repo id, or None when it is one."""
    if model.count("/") > 1:
        return "a repo id is 'name' or 'namespace/name'"
    if not REPO_ID.fullmatch(model):
        return ("a repo id has only letters, digits, '-', '_' and '.', does not start or end with '-' or "
                "'.', and has at most 96 characters a part")
    if "--" in model or ".." in model:
        return "a repo id cannot have '--' or '..'"
    if model.endswith(".git"):
        return "a repo id cannot end in '.git'"
    return None


def looks_like_path(model: str) -> bool:
    """Written as a path (absolute, ./, ../, ~, or more than one '/'): vLLM would refuse it as a repo id."""
    return model.startswith(("/", "./", "../", "~")) or model in (".", "..") or model.count("/") > 1


def _has_config(directory: str) -> bool:
    return any(os.path.isfile(os.path.join(directory, name)) for name in CONFIG_FILES)


def _nearest(path: str) -> str:
    """The deepest existing directory above PATH, and the entries in it closest to the missing part."""
    missing = Path(os.path.abspath(path))
    parent = missing.parent
    while not parent.is_dir() and parent != parent.parent:
        missing, parent = parent, parent.parent
    try:
        with os.scandir(parent) as entries:
            names = [e.name for _, e in zip(range(MAX_LISTED), entries, strict=False)]
    except OSError:
        names = []
    close = difflib.get_close_matches(missing.name, names, n=3, cutoff=0.7)
    if close:
        return f"did you mean {', '.join(str(parent / c) for c in close)}?"
    return f"the nearest directory that exists, {parent}, has no {missing.name!r}"


def _directory_without_config(model: str) -> Hit:
    below = []
    try:
        with os.scandir(model) as entries:
            below = [e.path for _, e in zip(range(MAX_LISTED), entries, strict=False)
                     if e.is_dir() and _has_config(e.path)]
    except OSError:
        pass
    where = f"model: {sorted(below)[0]}" if below else "model: the directory that holds config.json"
    return Hit(f"model {model} is a directory without config.json (nor Mistral's params.json): vLLM stops "
               "with \"Invalid repository ID or local directory specified\"",
               f"{where} (a complete download has config.json, the tokenizer and *.safetensors)")


def source_problem(model: str, *, local: bool = True, env: dict[str, str] | None = None) -> Hit | None:
    """Why vLLM will not open MODEL, or None. LOCAL: the paths are this machine's (else only what is wrong
    on every machine: a `~`, a name that is no repo id). ENV: the server's environment (HF_HUB_OFFLINE)."""
    if model.startswith(REMOTE_PREFIXES):
        return None
    if local and os.path.exists(model):
        if os.path.isdir(model):
            return None if _has_config(model) else _directory_without_config(model)
        parent = os.path.dirname(os.path.abspath(model))
        fix = f"model: {parent}" if _has_config(parent) else "model: the directory that holds config.json"
        return Hit(f"model {model} is a file, not a model directory: vLLM stops with \"Invalid repository ID "
                   "or local directory specified\"", fix)
    if model.startswith("~"):
        expanded = os.path.expanduser(model)
        there = local and os.path.exists(expanded)
        return Hit(f"model {model} starts with '~', which nothing expands (vLLM gets it as written, takes it "
                   "for a repo id and stops with HFValidationError)",
                   f"write the full path: model: {expanded}" if there or not local
                   else f"write the full path ({expanded} does not exist either: {_nearest(expanded)})")
    if looks_like_path(model):
        if not local:
            return None  # a path on the machine checked, which is not this one
        return Hit(f"model {model} does not exist: vLLM would take it for a Hugging Face repo id and stop "
                   "with \"HFValidationError: Repo id must be in the form 'repo_name' or "
                   "'namespace/repo_name'\"",
                   f"correct the path ({_nearest(model)}), or download the model there first")
    problem = repo_id_problem(model)
    if problem:
        tag = (" (an Ollama tag such as qwen2.5:7b is not a vLLM model: use the repo id, e.g. "
               "Qwen/Qwen2.5-7B-Instruct)") if ":" in model else ""
        return Hit(f"model {model!r} is neither a local directory nor a Hugging Face repo id ({problem}): "
                   "vLLM stops with HFValidationError",
                   "model: ORG/NAME as on huggingface.co, or the path of a directory holding "
                   f"config.json{tag}")
    offline = (env or {}).get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    if local and offline:
        from vllm_launcher.memory.arch import hf_cache_dirs

        folder = "models--" + model.replace("/", "--")
        if not any((cache / folder / "snapshots").is_dir() for cache in hf_cache_dirs()):
            return Hit(f"HF_HUB_OFFLINE is set and {model} is not in the Hugging Face cache: vLLM stops with "
                       "LocalEntryNotFoundError",
                       f"download it once (hf download {model}) or unset HF_HUB_OFFLINE")
    return None


def model_unavailable(facts: Facts) -> Hit | None:
    from vllm_launcher.demo import is_demo_model

    if is_demo_model(facts.preset.model):
        return None  # `up` builds it first
    return source_problem(facts.preset.model, local=facts.local, env=facts.env)
