"""The package's shape, as its docstring draws it: layers that import only downwards, no import
cycle, Faust's internals behind one module, and public names that exist."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import stream

ROOT = Path(stream.__file__).resolve().parent
#: Each layer may import itself and the layers before it.
LAYERS = ["settings", "contracts", "learning", "ranking", "processing", "runtime", "cli"]
#: The one module that may touch Faust's or aiokafka's private parts.
DOOR = "stream.runtime._faust"
PRIVATE_NAMES = re.compile(
    r"\._(read_offset|committed_offset|client|fetch_max_wait_ms|drain_messages|get_active_partitions|"
    r"create_worker_consumer|highwaters|seek_offsets|n_acked|commit_every|add_gap)\b"
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """The ``stream`` modules ``name`` imports, at module level or inside functions (TYPE_CHECKING aside)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []  # annotations only: no import at run time
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in out if m in MODULES and m != name}


def _layer(name: str) -> int | None:
    parts = name.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


@pytest.mark.parametrize("name", sorted(MODULES))
def test_each_module_imports_only_its_own_layer_and_those_below(name: str) -> None:
    mine = _layer(name)
    if mine is None:
        return  # stream itself and stream.__main__ sit above every layer
    above = {m for m in _imports(name) if (_layer(m) or 0) > mine or (_layer(m) is None and m != "stream")}
    assert not above, f"{name} (layer {LAYERS[mine]}) imports from above it: {sorted(above)}"


def test_the_import_graph_has_no_cycle() -> None:
    graph = {name: _imports(name) for name in MODULES}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(name) :], name]))
        if name in done:
            return
        for other in sorted(graph[name]):
            if other.startswith(name + "."):
                continue  # a package importing its own modules to re-export them
            visit(other, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_only_the_door_reaches_into_faust_and_aiokafka() -> None:
    for name, path in MODULES.items():
        source = path.read_text()
        if name == DOOR:
            continue
        assert not PRIVATE_NAMES.search(source), f"{name} touches a private part of Faust or aiokafka"
        assert not re.search(r"^\s*(from|import) faust\.(transport|tables)", source, re.M), name
        layer = _layer(name)
        if layer is not None and layer < LAYERS.index("runtime"):
            assert not re.search(r"^\s*(from|import) (faust|aiokafka)\b", source, re.M), f"{name} imports Kafka"


@pytest.mark.parametrize("name", sorted(set(MODULES) - {"stream.__main__"}))  # running it runs the CLI
def test_every_name_in_all_exists(name: str) -> None:
    module = importlib.import_module(name)
    names = getattr(module, "__all__", None)
    if name.rsplit(".", 1)[-1].startswith("_") and names is None:
        return
    assert names is not None, f"{name} has no __all__"
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not have: {missing}"
    assert len(set(names)) == len(names)


def test_each_subpackage_says_what_lives_there_and_what_it_may_import() -> None:
    for info in pkgutil.iter_modules([str(ROOT)]):
        if info.ispkg:
            doc = importlib.import_module(f"stream.{info.name}").__doc__ or ""
            assert len(doc) > 80 and "mport" in doc, f"stream.{info.name} needs a docstring saying what it may import"
