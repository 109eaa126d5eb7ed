"""The house: no import cycle in the package, layers that only look down, and tables that agree.

The import graph is read with the stdlib `ast` from the sources, every import counted (module-level and
inside functions), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "vllm_launcher"

# Who may import whom: a module of a layer imports only its own layer and those listed for it. Each package
# of vllm_launcher is in one layer; the core's packages (memory, preset, demo, clients) are pure.
LAYERS: dict[str, set[str]] = {
    "base": set(),
    "machine": {"base"},
    "core": {"base", "machine"},  # of the machine, only the Hardware value (test_the_core_is_pure)
    "exporters": {"base", "core"},
    "doctor": {"base", "core", "machine"},
    "supervise": {"base", "core", "machine", "doctor"},
    "gateway": {"base", "core", "machine", "doctor", "supervise", "exporters"},
    "benchmark": {"base", "core"},
    "commands": {"base", "core", "machine", "exporters", "doctor", "supervise", "gateway", "benchmark"},
    "cli": {"base", "commands"},
}
PACKAGE_LAYERS = {"base": "base", "machine": "machine", "memory": "core", "preset": "core", "demo": "core",
                  "clients": "core", "exporters": "exporters", "doctor": "doctor", "supervise": "supervise",
                  "gateway": "gateway", "benchmark": "benchmark", "commands": "commands", "cli": "cli",
                  "__main__": "cli", "__init__": "base"}


def layer_of(module: str) -> str:
    parts = module.split(".")[1:]
    if not parts:
        return "base"
    if parts[0] not in PACKAGE_LAYERS:
        raise AssertionError(f"{module} is in no layer: add its package to test_architecture.PACKAGE_LAYERS")
    return PACKAGE_LAYERS[parts[0]]


def test_no_module_sits_loose_in_the_package():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert loose == []


def test_the_core_is_pure():
    """The memory fit, presets, the demo model and the clients' config read the machine only as the Hardware
    value: never processes, ports or server records."""
    wrong = [f"{module} imports {target}" for module, imported in import_graph().items()
             if layer_of(module) == "core" for target in imported
             if layer_of(target) == "machine" and target != "vllm_launcher.machine.hardware"]
    assert wrong == []


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def runtime_nodes(tree: ast.AST, type_hints: bool = False) -> list[ast.AST]:
    """Every node, except the bodies of `if TYPE_CHECKING:` (imports for type hints only, never run) unless
    TYPE_HINTS."""
    found: list[ast.AST] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        found.append(node)
        if (not type_hints and isinstance(node, ast.If) and isinstance(node.test, ast.Name)
                and node.test.id == "TYPE_CHECKING"):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))
    return found


def import_graph(type_hints: bool = False) -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8")), type_hints):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join([*base, node.module] if node.module else base)
                else:
                    source = node.module or ""
                targets = [source, *(f"{source}.{alias.name}" for alias in node.names)]
            graph[name] |= {target for target in targets if target in known and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_in_the_package():
    assert cycles(import_graph()) == []


def test_no_import_cycle_even_through_type_hints():
    """A circle kept only for type hints (models <-> weights was one) is still two modules that cannot be
    understood apart."""
    assert cycles(import_graph(type_hints=True)) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_layers_only_look_down():
    wrong = []
    for module, imported in import_graph().items():
        mine = layer_of(module)
        for target in imported:
            theirs = layer_of(target)
            if theirs != mine and theirs not in LAYERS[mine] and not target.endswith("vllm_launcher"):
                wrong.append(f"{module} ({mine}) imports {target} ({theirs})")
    assert wrong == []


def test_the_render_formats_are_the_exporter_registry():
    from vllm_launcher.cli.options import RENDER_FORMATS
    from vllm_launcher.commands.presets import EXPORT_FORMATS, PLAN_FORMATS
    from vllm_launcher.exporters.registry import FORMATS

    assert EXPORT_FORMATS == FORMATS and RENDER_FORMATS == PLAN_FORMATS + FORMATS


def test_every_command_body_takes_exactly_its_parameters():
    import inspect

    from vllm_launcher.cli.table import COMMANDS

    for command in COMMANDS:
        expected = {p.dest for p in command.params if p.group is None}
        if any(p.group == "overrides" for p in command.params):
            expected.add("overrides")
        if any(p.group == "export" for p in command.params):
            expected.add("export_values")
        assert set(inspect.signature(command.load()).parameters) == expected, command.name
