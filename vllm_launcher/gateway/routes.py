"""Which server answers a request: every name a client may send as `model` (a preset's served model name,
its name, its aliases, or an external upstream's name) mapped to one route. Pure: no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vllm_launcher.base.errors import ConfigError

if TYPE_CHECKING:
    from vllm_launcher.preset.schema import Preset

UPSTREAM = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._/-]{0,127})=(?P<url>https?://[^\s/]+(?::\d+)?)/?")


@dataclass(frozen=True)
class Route:
    """One model behind the gateway: a preset the gateway starts and stops, or an external upstream (a
    server it only forwards to)."""

    name: str  # the preset's name, or the upstream's
    served: str  # the model name the server itself serves (the body's `model` is rewritten to it)
    names: tuple[str, ...]  # every name clients may use
    preset: Preset | None = None
    source: str = ""  # the preset's file
    upstream: str | None = None  # external: http://host:port
    aliases: tuple[str, ...] = field(default_factory=tuple)

    @property
    def external(self) -> bool:
        return self.upstream is not None

    @property
    def max_model_len(self) -> int | None:
        return self.preset.max_model_len if self.preset is not None else None


def preset_route(preset: Preset, source: str) -> Route:
    from vllm_launcher.preset.plan import served_model_name

    served = served_model_name(preset)
    names = tuple(dict.fromkeys([served, preset.name, *preset.aliases]))
    return Route(preset.name, served, names, preset, source, None, tuple(preset.aliases))


def upstream_route(spec: str) -> Route:
    """`--upstream NAME=http://host:port`: a server the gateway forwards to but never starts or stops."""
    found = UPSTREAM.fullmatch(spec.strip())
    if not found:
        raise ConfigError(f"expected NAME=http://HOST:PORT, not {spec!r}", source="--upstream")
    name = found.group("name")
    return Route(name, name, (name,), None, "", found.group("url"))


@dataclass(frozen=True)
class RouteTable:
    routes: tuple[Route, ...]
    by_name: dict[str, Route]

    def lookup(self, model: object) -> Route | None:
        return self.by_name.get(model) if isinstance(model, str) else None

    def known(self) -> list[str]:
        return list(self.by_name)


def build_routes(routes: list[Route]) -> RouteTable:
    """The table; a name claimed by two routes is a ConfigError naming both (exit 2)."""
    by_name: dict[str, Route] = {}
    unique: dict[str, Route] = {}
    for route in routes:
        if unique.get(route.name) == route:
            continue  # the same preset named twice
        for name in route.names:
            other = by_name.get(name)
            if other is not None:
                raise ConfigError(f"the model name {name!r} would route to both {other.name} and "
                                  f"{route.name}; give one of them another served_model_name or alias")
            by_name[name] = route
        unique[route.name] = route
    if not routes:
        raise ConfigError("no preset to serve: name presets (vllm-launch gateway PRESET...) or --upstream "
                          "NAME=URL; with none, the gateway serves every preset that fits this machine, and "
                          "none does (vllm-launch doctor says why)")
    return RouteTable(tuple(unique.values()), by_name)
