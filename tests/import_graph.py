"""The package's import graph, built from the source (every `import` and
`from ... import`: at module level, inside functions, and under
TYPE_CHECKING), its circles, and its layers.

    python tests/import_graph.py [REPO]   prints the circles and the imports that climb
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

# The package in layers, bottom first: a module may import its own layer and
# the ones below, never one above. A module's layer is that of the longest
# name here that it starts with.
LAYERS = (
    # the kit's plumbing
    (
        "competition.errors",
        "competition.fileio",
        "competition.locks",
        "competition.progress",
        "competition.workers",
        "competition.ids",
        "competition.knobs",
        "competition.backend",
    ),
    # what a competition is (the task spec, its metrics) and where its files are
    (
        "competition.template",
        "competition.evaluation.metrics",
        "competition.evaluation.arrays",
        "competition.evaluation.weighted_losses",
        "competition.evaluation.ranking",
        "competition.task",
    ),
    ("competition.layout",),
    # the stages: each takes its own settings section or plain values
    (
        "competition.data",
        "competition.augment",
        "competition.training",
        "competition.sequence",
        "competition.inference",
        "competition.evaluation",
        "competition.synthetic",
        "competition.stacking",
        "competition.localise",
        "competition.kaggle.settings",
    ),
    # the configuration: every stage's section side by side, files, checks
    ("competition.config",),
    # the stages assembled from a config
    ("competition.pipeline",),
    # the commands and the public API
    (
        "competition",
        "competition.cli",
        "competition.cluster",
        "competition.kaggle",
        "competition.devtools",
    ),
)


def modules(repo: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of the package (a package is its __init__)."""
    found = {}
    for path in sorted((repo / "competition").rglob("*.py")):
        parts = path.relative_to(repo).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: from the module's own package up
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, base] if base else package)
        return [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return []


def graph(repo: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in its source)."""
    found = modules(repo)
    edges: dict[str, set[str]] = {name: set() for name in found}
    for name, path in found.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for target in _imported(node, name, is_package):
                while target and target not in found:  # `from pkg import module` or a name
                    target = target.rpartition(".")[0]
                if target.startswith("competition") and target != name:
                    edges[name].add(target)
    return edges


def importers(repo: Path, package: str) -> set[str]:
    """The package's modules that import `package` (anywhere in their source)."""
    found = set()
    for name, path in modules(repo).items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = _imported(node, name, path.name == "__init__.py")
            if any(t == package or t.startswith(package + ".") for t in targets):
                found.add(name)
    return found


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
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

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(edges)))
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def layer_of(module: str) -> int:
    matches = [
        (len(name), level)
        for level, names in enumerate(LAYERS)
        for name in names
        if module == name or module.startswith(name + ".")
    ]
    if not matches:
        raise KeyError(f"{module} is in no layer of tests/import_graph.py")
    return max(matches)[1]


def climbs(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) where the imported module sits in a higher layer."""
    return sorted(
        (source, target)
        for source, targets in edges.items()
        for target in targets
        if layer_of(target) > layer_of(source)
    )


if __name__ == "__main__":
    repo = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
    edges = graph(repo)
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} imports")
    for component in circles(edges):
        print("circle:", " <-> ".join(component))
    for source, target in climbs(edges):
        print(f"climbs: {source} -> {target}")
