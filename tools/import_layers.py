"""The import-layer contract of sm_imgclf: imports point down, and no module imports itself back.

``python tools/import_layers.py [SRC]`` reads every module under ``SRC/sm_imgclf``
(default: ``src``) with :mod:`ast`, without importing anything, and counts every
import: at module level, inside functions, and under ``TYPE_CHECKING``. It
exits 1, naming each offending import, when

- a module imports one from a higher layer (see :data:`LAYERS`),
- a module imports one that its layer is kept apart from (see :data:`APART`), or
- modules import each other in a circle, other than the pairs in :data:`ALLOWED_CIRCLES`, or
- packages do: a module of package ``a`` imports one of ``b`` and a module of ``b`` (or of
  a package inside it) imports one of ``a``, even when no two modules form a circle.

``nox -s lint`` runs it; the architecture page of the docs draws the same layers.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "sm_imgclf"

# Bottom first. A module belongs to the layer of its longest matching prefix.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "base",
        (
            "errors",
            "_params",
            "_version",
            "_lazy",
            "_progress",
            "_archive",
            "_pacing",
            "_pages",
            "_inputs",
            "_cache",
        ),
    ),
    ("contracts", ("contracts",)),
    ("storage, dataset files and runtime", ("storage", "data", "runtime")),
    ("backends", ("backends",)),
    ("session", ("session",)),
    ("public handles", ("data.dataset", "training", "tuning", "serving", "evaluation", "debug")),
    ("command line", ("cli", "__main__", "")),
)

# Within a layer: (importer prefix, imported prefix) pairs that must stay apart.
APART: tuple[tuple[str, str], ...] = (
    ("runtime", "storage"),  # what ships into containers never talks to a store
    ("runtime", "data.upload"),
    ("storage", "runtime"),
    ("storage", "data"),
)

# Circles between a module and its own helper; the architecture page names each.
ALLOWED_CIRCLES: frozenset[frozenset[str]] = frozenset()


def _qualified(short: str) -> str:
    return f"{PACKAGE}.{short}" if short else PACKAGE


def _matches(module: str, prefix: str) -> bool:
    full = _qualified(prefix)
    return module == full or module.startswith(full + ".") or (not prefix and module == PACKAGE)


def layer_of(module: str) -> int:
    """Index of ``module``'s layer in :data:`LAYERS` (its longest matching prefix wins)."""
    best, best_length = len(LAYERS) - 1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if _matches(module, prefix) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    return best


def modules(src: Path) -> dict[str, Path]:
    """Every module of the package under ``src``, by dotted name."""
    found = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(path: Path, known: set[str]) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every import of one of ``known`` in the file at ``path``."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                if child in known:
                    yield node.lineno, child
                elif node.module in known:
                    yield node.lineno, node.module


def graph(src: Path) -> dict[str, dict[str, int]]:
    """Module to the modules it imports, each with the line of its first import."""
    found = modules(src)
    edges: dict[str, dict[str, int]] = {name: {} for name in found}
    for name, path in found.items():
        for line, target in imports(path, set(found)):
            if target != name:
                edges[name].setdefault(target, line)
    return edges


def layer_problems(edges: dict[str, dict[str, int]], files: dict[str, Path]) -> list[str]:
    """Upward imports and imports between modules kept apart."""
    problems = []
    for source, targets in sorted(edges.items()):
        for target, line in sorted(targets.items()):
            where = f"{files[source]}:{line}: {source} imports {target}"
            low, high = layer_of(target), layer_of(source)
            if low > high:
                problems.append(
                    f"{where}, which is in a higher layer "
                    f"({LAYERS[low][0]!r} above {LAYERS[high][0]!r})"
                )
            for importer, imported in APART:
                if _matches(source, importer) and _matches(target, imported):
                    problems.append(f"{where}; {importer} and {imported} are kept apart")
    return problems


def package_of(module: str, files: dict[str, Path]) -> str:
    """The package holding ``module``: itself for a package's ``__init__``, else its parent."""
    if files[module].name == "__init__.py":
        return module
    return module.rpartition(".")[0] or module


def package_edges(
    edges: dict[str, dict[str, int]], files: dict[str, Path]
) -> dict[str, dict[str, int]]:
    """Package to the packages its modules import, leaving out a package's own parents.

    A module importing a package above its own (``runtime.job`` importing ``runtime``) is
    reaching its own base, not another part: only imports between parts that neither holds
    the other make a package circle.
    """
    found: dict[str, dict[str, int]] = {package_of(name, files): {} for name in files}
    for source, targets in edges.items():
        mine = package_of(source, files)
        for target, line in targets.items():
            theirs = package_of(target, files)
            if theirs == mine or _within(mine, theirs) or _within(theirs, mine):
                continue
            found[mine].setdefault(theirs, line)
    return found


def _within(package: str, parent: str) -> bool:
    return package.startswith(parent + ".")


def circles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Groups of nodes that import each other (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 and frozenset(group) not in ALLOWED_CIRCLES:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def check(src: Path) -> list[str]:
    """Every violation of the contract in the package under ``src``; empty when it holds."""
    files = modules(src)
    edges = graph(src)
    problems = layer_problems(edges, files)
    problems += [f"import circle among: {', '.join(group)}" for group in circles(edges)]
    problems += [
        f"package circle among: {', '.join(group)}"
        for group in circles(package_edges(edges, files))
    ]
    return problems


def main(argv: list[str]) -> int:
    """Print every violation; return 1 if there is one."""
    src = Path(argv[0]) if argv else Path("src")
    problems = check(src)
    for problem in problems:
        print(problem)
    count = len(modules(src))
    print(f"import layers: {count} modules, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
