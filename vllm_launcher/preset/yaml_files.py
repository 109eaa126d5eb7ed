"""Preset files as YAML: one mapping per file, with the file and line of every key, read so that a hostile
file cannot hang or blow up the reader (a regular file of at most 1 MiB, no aliases, bounded nesting) and
every error names the file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vllm_launcher.base.errors import ConfigError
from vllm_launcher.base.files import read_user_file

# (source, line) of each key path, so that a validation error can name the file and line it came from.
Provenance = dict[tuple[str, ...], tuple[str, int | None]]
# A preset is a few hundred bytes; these bounds make a hostile file cheap to refuse.
MAX_PRESET_BYTES = 1 << 20
MAX_YAML_DEPTH = 16


def _read_text(path: Path) -> str:
    """A preset file's text: a regular file of at most MAX_PRESET_BYTES (files.read_user_file)."""
    return read_user_file(path, max_bytes=MAX_PRESET_BYTES)


def check_yaml_shape(text: str, path: Path, loader_cls: type, what: str = "presets",
                      hint: str = "use `extends` to share settings") -> None:
    """Refuse aliases (one alias can name a subtree that names itself again: an "alias bomb" expands to
    billions of nodes for every reader after the parser) and nesting deeper than MAX_YAML_DEPTH. Reads the
    event stream once, so it costs what parsing costs."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=loader_cls):
            line = event.start_mark.line + 1 if event.start_mark is not None else None
            if isinstance(event, yaml.AliasEvent):
                raise ConfigError(f"YAML aliases (*name) are not allowed in {what}; {hint}", source=path,
                                  line=line)
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise ConfigError(f"nested more than {MAX_YAML_DEPTH} levels deep ({what})", source=path,
                                      line=line)
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, path) from None


def _yaml_error(exc: yaml.YAMLError, path: Path) -> ConfigError:
    """A YAML error as one line naming the file and, when the parser marked it, the line."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        return ConfigError(f"malformed YAML: {exc.problem or exc.context}", source=path, line=line)
    return ConfigError(f"malformed YAML: {' '.join(str(exc).split())}", source=path)


def _record_lines(node: yaml.Node, prefix: tuple[str, ...], source: str, out: Provenance) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*prefix, str(key_node.value))
            if key in out:  # YAML would keep the last silently; one of them is a mistake
                raise ConfigError(f"duplicate key (first on line {out[key][1]})", source=source,
                                  line=key_node.start_mark.line + 1, field=".".join(key))
            out[key] = (source, key_node.start_mark.line + 1)
            _record_lines(value_node, key, source, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            key = (*prefix, str(index))
            out[key] = (source, item.start_mark.line + 1)
            _record_lines(item, key, source, out)


def compose_yaml(text: str, path: Path | str, what: str = "presets",
                 hint: str = "use `extends` to share settings") -> tuple[Any, yaml.Node | None, Provenance]:
    """One YAML document read safely: (its data, its node tree with the marks of every key, the line of
    every key path). Refuses aliases, deep nesting, several documents and duplicate keys (YAML would keep
    the last silently). Raises ConfigError naming PATH and the line."""
    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    check_yaml_shape(text, Path(path), loader_cls, what, hint)
    loader = loader_cls(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, Path(path)) from None
    finally:
        loader.dispose()
    lines: Provenance = {}
    if node is not None:
        _record_lines(node, (), str(path), lines)
    return data, node, lines


def load_yaml_mapping(path: Path) -> tuple[dict[str, Any], Provenance]:
    """Read one preset file: its mapping and the line of every key. Raises ConfigError."""
    data, node, lines = compose_yaml(_read_text(path), path)
    if data is None or node is None:
        raise ConfigError("empty preset file; expected a mapping with at least `model:`", source=path)
    if not isinstance(data, dict):
        raise ConfigError(
            f"a preset must be a mapping of keys to values, not a {type(data).__name__}",
            source=path,
            line=node.start_mark.line + 1,
        )
    return data, lines
