"""The package's layers only point down, and no modules import each other (docs/architecture.md).

Every import of every module counts: top-level, inside functions, under ``TYPE_CHECKING``, and the
``"routeray.<module>:<name>"`` strings that registries import lazily. Runs on the source (ast), imports nothing.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "routeray"

# Bottom up. A module belongs to the layer of its longest matching prefix; it may import its own layer and
# those below, never one above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("utilities", ("routeray._version", "routeray.errors", "routeray.paths", "routeray.artifacts")),
    ("data", ("routeray.data",)),
    ("encoders", ("routeray.encoders",)),
    ("model preparation", ("routeray.local_models",)),
    ("routers", ("routeray.routers",)),
    ("train / evaluate / calibrate", ("routeray.train", "routeray.evaluate", "routeray.calibrate")),
    ("gateway", ("routeray.config", "routeray.metrics", "routeray.gateway")),
    ("deployments / sdk / cli", ("routeray.deployments", "routeray.sdk", "routeray.cli", "routeray.__main__",
                                 "routeray")),
]
RAY_ALLOWED = ("routeray.deployments",)  # the Ray Serve glue; nothing else imports ray
# Same-layer imports that would still tangle things: the server and the client library share gateway/ only.
FORBIDDEN = [("routeray.deployments", "routeray.sdk"), ("routeray.sdk", "routeray.deployments")]
_LAZY = re.compile(r"^(routeray(?:\.\w+)+):\w+$")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The package module that ``import name`` runs last (``a.b.C`` -> ``a.b`` when C is not a module)."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


@cache
def imports(module: str) -> dict[str, int]:
    """Package modules ``module`` imports, each with the first line that does."""
    tree = ast.parse(modules()[module].read_text(encoding="utf-8"))
    base = module if modules()[module].name == "__init__.py" else module.rpartition(".")[0]
    found: dict[str, int] = {}

    def add(name: str | None, line: int) -> None:
        target = _resolve(name) if name else None
        if target and target != module:
            found.setdefault(target, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("routeray"):
                    add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = base.rsplit(".", node.level - 1)[0] if node.level > 1 else base
                mod = f"{pkg}.{node.module}" if node.module else pkg
            else:
                mod = node.module or ""
            if mod.startswith("routeray"):
                for alias in node.names:  # `from pkg import submodule` imports the submodule
                    full = f"{mod}.{alias.name}"
                    add(full if full in modules() else mod, node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            m = _LAZY.match(node.value)
            if m:
                add(m.group(1), node.lineno)
    return found


def imports_ray(module: str) -> int | None:
    tree = ast.parse(modules()[module].read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        if any(n == "ray" or n.startswith("ray.") for n in names):
            return node.lineno
    return None


def layer(module: str) -> int:
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS and to docs/architecture.md")
    return best


def test_every_module_has_a_layer() -> None:
    for module in modules():
        layer(module)


def test_no_module_imports_a_layer_above_it() -> None:
    upward = []
    for module in modules():
        for target, line in imports(module).items():
            if layer(target) > layer(module):
                upward.append(f"{modules()[module].relative_to(PACKAGE.parent)}:{line}: {module} "
                              f"({LAYERS[layer(module)][0]}) imports {target} ({LAYERS[layer(target)][0]})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_server_and_client_share_only_the_gateway() -> None:
    found = [f"{m} imports {t}" for m in modules() for t in imports(m)
             for a, b in FORBIDDEN if m.startswith(a) and t.startswith(b)]
    assert not found, "\n".join(found)


def strongly_connected(graph: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one member (the import cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_strongly_connected_finds_a_cycle() -> None:
    assert strongly_connected({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert strongly_connected({"a": ["b"], "b": []}) == []


def test_no_import_cycles() -> None:
    graph = {m: sorted(imports(m)) for m in modules()}
    cycles = strongly_connected(graph)
    assert not cycles, "modules that import each other (directly or through others):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", [m for m in sorted(modules()) if not m.startswith(RAY_ALLOWED)])
def test_only_the_serve_glue_imports_ray(module: str) -> None:
    line = imports_ray(module)
    assert line is None, f"{modules()[module]}:{line} imports ray; only {', '.join(RAY_ALLOWED)} may"


def test_the_gateway_core_runs_without_ray() -> None:
    """What the ast says, checked for real: the gateway core and the SDK import with ray unimportable."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['ray'] = None\n"
            "import routeray.gateway.service, routeray.gateway.http, routeray.gateway.scorers, routeray.sdk\n"
            "assert not any(m == 'ray' or m.startswith('ray.') for m in sys.modules if sys.modules[m])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
