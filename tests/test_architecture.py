"""The rules of docs/architecture.md: no import cycle, no import into a higher layer, no two
modules with one file name, no function over 60 lines (argument-parser tables excepted).

The graph, the layer table and the counts come from `scripts/house_counts.py` (imports read
with `ast`, also inside functions). The known exceptions are listed by name and may only shrink.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_counts():
    path = ROOT / "scripts" / "house_counts.py"
    spec = importlib.util.spec_from_file_location("house_counts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


house = _load_counts()

# Still to remove (docs/architecture.md, "Known exceptions"); strike an entry when it is fixed.
KNOWN_UPWARD: set[tuple[str, str]] = set()
KNOWN_CYCLES: set[frozenset[str]] = set()
KNOWN_LONG: set[str] = set()


@pytest.fixture(scope="module")
def graph():
    return house.import_graph(ROOT)


def test_every_module_has_a_layer(graph):
    for module in graph:
        house.layer_of(module)  # KeyError names a module outside every layer


def test_no_import_cycle_beyond_the_known_ones(graph):
    found = {frozenset(group) for group in house.cycles(graph)}
    assert found - KNOWN_CYCLES == set(), "new import cycle(s)"
    assert KNOWN_CYCLES - found == set(), "a known cycle is gone: strike it from KNOWN_CYCLES"


def test_no_upward_import_beyond_the_known_ones(graph):
    found = set(house.upward_imports(graph))
    assert found - KNOWN_UPWARD == set(), "import(s) into a higher layer"
    assert KNOWN_UPWARD - found == set(), "a known upward import is gone: strike it"


def test_library_never_imports_cli_apps_or_benchmarks(graph):
    top = ("bpsn_ext.cli", "bpsn_ext.__main__", "bpsn_ext.apps", "bpsn_ext.bench", "benchmarks")
    library = [m for m in graph if not m.startswith(top)]
    bad = [(m, t) for m in library for t in graph[m] if t.startswith(top)]
    assert bad == []


def test_no_two_modules_share_a_file_name():
    assert house.shared_basenames(ROOT) == {}, "give the new file a name that says what it holds"


def test_no_function_over_60_lines_beyond_the_known_ones():
    found = {name for name, _ in house.long_functions(ROOT)}
    assert found - KNOWN_LONG == set(), "split the function (argument-parser tables excepted)"
    assert KNOWN_LONG - found == set(), "a known long function is gone: strike it"


def _write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_checks_find_a_synthetic_cycle_and_upward_edge(tmp_path):
    # a cycle made by a function-level import, and the maths importing the CLI
    _write(tmp_path, "bpsn_ext/__init__.py", "")
    _write(tmp_path, "bpsn_ext/core/__init__.py", "")
    _write(tmp_path, "bpsn_ext/core/a.py", "from bpsn_ext.core import b\n")
    _write(tmp_path, "bpsn_ext/core/b.py", "def f():\n    from bpsn_ext.core.a import x\n")
    _write(tmp_path, "bpsn_ext/core/c.py", "from bpsn_ext.cli import positive_int\n")
    _write(tmp_path, "bpsn_ext/cli.py", "from .core import c\n")
    (tmp_path / "benchmarks").mkdir()
    graph = house.import_graph(tmp_path)
    assert graph["bpsn_ext.core.a"] == {"bpsn_ext.core.b"}
    assert graph["bpsn_ext.cli"] == {"bpsn_ext.core.c"}  # relative import resolved
    assert {frozenset(g) for g in house.cycles(graph)} == {
        frozenset({"bpsn_ext.core.a", "bpsn_ext.core.b"}),
        frozenset({"bpsn_ext.core.c", "bpsn_ext.cli"}),
    }
    assert house.upward_imports(graph) == [("bpsn_ext.core.c", "bpsn_ext.cli")]


def test_the_long_function_count_skips_only_parser_tables(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(61))
    _write(tmp_path, "bpsn_ext/__init__.py", "")
    _write(tmp_path, "bpsn_ext/m.py", f"def long():\n{body}\ndef add_arguments():\n{body}")
    (tmp_path / "benchmarks").mkdir()
    assert house.long_functions(tmp_path) == [("bpsn_ext/m.py:long", 62)]


def test_the_name_check_finds_two_files_with_one_name(tmp_path):
    _write(tmp_path, "bpsn_ext/__init__.py", "")
    _write(tmp_path, "bpsn_ext/core/__init__.py", "")
    _write(tmp_path, "bpsn_ext/core/ssm.py", "")
    _write(tmp_path, "bpsn_ext/energy/ssm.py", "")
    _write(tmp_path, "bpsn_ext/energy/__init__.py", "")
    (tmp_path / "benchmarks").mkdir()
    assert house.shared_basenames(tmp_path) == {
        "ssm.py": ["bpsn_ext/core/ssm.py", "bpsn_ext/energy/ssm.py"]
    }


def test_a_new_top_level_module_is_in_no_layer_until_placed():
    assert house.LAYERS[house.layer_of("bpsn_ext")][0] == "adapters"  # the facade only
    assert house.LAYERS[house.layer_of("bpsn_ext.core.masks")][0] == "maths"
    with pytest.raises(KeyError, match="bpsn_ext.newcomer is in no layer"):
        house.layer_of("bpsn_ext.newcomer")


def test_no_cycle_between_folders(graph):
    """The house drawing (`house_counts.py --drawing`): no arrow between two folders (or
    top-level modules) runs both ways, and none runs up."""
    folders = house.folder_graph(graph)
    assert house.cycles(folders) == []
    assert house.upward_imports(folders) == []


def test_command_files_hold_commands_and_keep_their_private_names():
    """A command file parses flags and wires the library (each under 400 lines); no module
    (library, tests, scripts) imports a private name of `bpsn_ext.apps`."""
    import ast

    long = {
        p.name: n
        for p in (ROOT / "bpsn_ext" / "apps").glob("*.py")
        if (n := len(p.read_text().splitlines())) >= 400
    }
    assert long == {}, "move the library parts of the command file down"
    private = []
    for base in ("bpsn_ext", "tests", "benchmarks", "scripts"):
        for path in (ROOT / base).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "bpsn_ext.apps"
                ):
                    private += [f"{path.name}: {a.name}" for a in node.names if a.name[0] == "_"]
    assert private == []
