"""Count what `docs/architecture.md` promises to keep at zero: import cycles, upward imports,
files sharing a basename, and functions over 60 lines (argument-parser tables excepted).

Run from the repository root:

    python scripts/house_counts.py            # the counts
    python scripts/house_counts.py --drawing  # the house drawing: layers, folders, arrows

Imports are read with `ast` (module level and inside functions), so nothing is executed.
`tests/test_architecture.py` uses the same graph and layer table.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "bpsn_ext"
MAX_LINES = 60

# Layers, lowest first: a module may import its own layer and the layers below it, never above.
# Each entry: (layer name, module names). A name holds that module and, for a package, the
# modules inside it (the longest matching name wins); the package itself, `bpsn_ext`, holds only
# its `__init__.py`, so every top-level module is listed here by name and a new one is in no
# layer until it is placed.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("util", ("bpsn_ext.util",)),
    ("maths", ("bpsn_ext.core", "bpsn_ext.surrogate")),
    ("kernels", ("bpsn_ext.kernels",)),
    ("modules", ("bpsn_ext.bpsn_module", "bpsn_ext.layers", "bpsn_ext.optim")),
    (
        "adapters",
        (
            "bpsn_ext.spikingjelly",
            "bpsn_ext.snntorch",
            "bpsn_ext.module_swap",
            "bpsn_ext.layout_probe",
            "bpsn_ext.swap_losses",
            "bpsn_ext.convert",
            "bpsn_ext.registry",
            PACKAGE,  # the package facade, bpsn_ext/__init__.py
        ),
    ),
    ("energy", ("bpsn_ext.energy",)),
    ("models+data", ("bpsn_ext.models", "bpsn_ext.data")),
    ("train", ("bpsn_ext.train",)),
    ("bench", ("bpsn_ext.bench",)),
    ("apps", ("bpsn_ext.apps", "bpsn_ext.plots")),
    ("cli", ("bpsn_ext.cli", "bpsn_ext.__main__", "benchmarks")),
]


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Map every module name of the package (and `benchmarks/`) to its file."""
    files = {}
    for base in (PACKAGE, "benchmarks"):
        for path in sorted((root / base).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join(parts)] = path
    return files


def layer_of(module: str) -> int:
    """Index into `LAYERS` of the layer that holds `module` (longest matching prefix)."""
    best, best_len = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module.startswith(prefix + ".") and prefix != PACKAGE
            if (module == prefix or inside) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best < 0:
        raise KeyError(f"{module} is in no layer of scripts/house_counts.py:LAYERS")
    return best


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _known(name: str, known: set[str]) -> str:
    """The longest known module that `name` is or lies in ('' if none)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name


def imports_of(module: str, source: str, known: set[str], path: Path) -> set[str]:
    """The known modules that `source` imports (anywhere in the file, also inside functions).

    `from a.b import c` counts as an import of `a.b.c` when that is a module, else of `a.b`.
    """
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(_known(alias.name, known) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_of(module, path)
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else _known(base, known))
    return found - {"", module}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """`{module: modules it imports}` over the package and `benchmarks/`."""
    files = module_files(root)
    known = set(files)
    return {m: imports_of(m, p.read_text(), known, p) for m, p in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Edges `(importer, imported)` whose target lies in a higher layer than the importer."""
    return sorted(
        (a, b) for a, targets in graph.items() for b in targets if layer_of(b) > layer_of(a)
    )


def shared_basenames(root: Path = ROOT) -> dict[str, list[str]]:
    """Basenames (other than `__init__.py`/`__main__.py`) held by more than one file."""
    paths = [p for p in module_files(root).values() if p.name not in ("__init__.py", "__main__.py")]
    counts = Counter(p.name for p in paths)
    return {
        name: sorted(str(p.relative_to(root)) for p in paths if p.name == name)
        for name, n in sorted(counts.items())
        if n > 1
    }


def folder_of(module: str, graph: dict[str, set[str]]) -> str:
    """The unit of the house drawing that holds `module`: its folder (`bpsn_ext.core`), its
    top-level module (`bpsn_ext.surrogate`), the facade (`bpsn_ext`) or `benchmarks`."""
    parts = module.split(".")
    if parts[0] != PACKAGE or len(parts) == 1:
        return parts[0]
    return f"{PACKAGE}.{parts[1]}"


def folder_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """`{unit: units it imports}` between the units of `folder_of` (the house drawing)."""
    out: dict[str, set[str]] = {}
    for module, targets in graph.items():
        unit = folder_of(module, graph)
        out.setdefault(unit, set()).update(
            t for t in (folder_of(b, graph) for b in targets) if t != unit
        )
    return out


def _unit_label(unit: str, graph: dict[str, set[str]]) -> str:
    if unit == PACKAGE:
        return "__init__.py"
    name = unit.removeprefix(PACKAGE + ".")
    is_folder = any(m.startswith(unit + ".") for m in graph) or unit == "benchmarks"
    return name + ("/" if is_folder else ".py")


def drawing(graph: dict[str, set[str]]) -> str:
    """The house drawing: each layer (top first) with its units and the units each imports.

    Every arrow points down or stays in its layer; `tests/test_architecture.py` checks that
    none runs back up and that no two units import each other (round a loop)."""
    folders = folder_graph(graph)
    lines = []
    for index in range(len(LAYERS) - 1, -1, -1):
        units = sorted(u for u in folders if layer_of(u) == index)
        lines.append(f"{index:>2} {LAYERS[index][0]}")
        for unit in units:
            targets = sorted(folders[unit], key=lambda t: (-layer_of(t), t))
            arrow = " ".join(_unit_label(t, graph) for t in targets) or "(nothing)"
            lines.append(f"     {_unit_label(unit, graph):<16} -> {arrow}")
    return "\n".join(lines)


_PARSER_TABLE = re.compile(r"(parser|arguments)$")


def long_functions(root: Path = ROOT, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    """`("path:qualname", lines)` of functions longer than `limit` lines, parser tables excepted.

    A function whose name ends in `parser` or `arguments` (an argparse table) is not counted.
    """
    found = []
    for path in module_files(root).values():
        tree = ast.parse(path.read_text())

        def walk(node: ast.AST, prefix: str, path: Path = path) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    name = f"{prefix}{child.name}"
                    lines = child.end_lineno - child.lineno + 1
                    if lines > limit and not _PARSER_TABLE.search(child.name):
                        found.append((f"{path.relative_to(root)}:{name}", lines))
                    walk(child, name + ".", path)
                elif isinstance(child, ast.ClassDef):
                    walk(child, f"{prefix}{child.name}.", path)

        walk(tree, "")
    return sorted(found, key=lambda item: -item[1])


def main(argv: list[str] | None = None) -> int:
    graph = import_graph()
    if "--drawing" in (sys.argv[1:] if argv is None else argv):
        print(drawing(graph))
        return 0
    cyc, up = cycles(graph), upward_imports(graph)
    shared, long = shared_basenames(), long_functions()
    n_shared = sum(len(v) for v in shared.values())
    print("| measure | count |\n|---|---|")
    print(f"| import cycles (strongly connected groups of modules) | {len(cyc)} |")
    print(f"| upward imports (edges into a higher layer) | {len(up)} |")
    print(f"| files sharing a basename ({len(shared)} names) | {n_shared} |")
    print(f"| functions over {MAX_LINES} lines (parser tables excepted) | {len(long)} |")
    print()
    for group in cyc:
        print("cycle:", " <-> ".join(group))
    for a, b in up:
        print(f"upward: {a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]})")
    for name, paths in shared.items():
        print(f"shared name {name}: {', '.join(paths)}")
    for name, lines in long:
        print(f"long: {name} {lines} lines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
