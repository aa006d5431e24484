# The package's module graph: every `import` / `from ... import` of sgn_ros modules, read with ast
# from the source (function-level imports included: a lazy import is still a dependency; imports
# under `if TYPE_CHECKING:` are not, they never run). Asserts the graph has no cycle and that the
# floors hold: training sits above evaluation, ros on top.
"""No import cycles between sgn_ros modules; layer rules."""

from __future__ import annotations

import ast
from pathlib import Path

import sgn_ros

PKG = Path(sgn_ros.__file__).resolve().parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: set[str]) -> set[str]:
    """sgn_ros modules `path` imports (a `from pkg import name` counts pkg.name when it is a module)."""
    me = _module_name(path)
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = me.split(".") if is_pkg else me.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            if n in modules:
                out.add(n)
            elif n.startswith("sgn_ros"):
                # a name inside a module: the module itself
                parent = n.rsplit(".", 1)[0]
                if parent in modules:
                    out.add(parent)
    out.discard(me)
    return out


def module_graph() -> dict[str, set[str]]:
    files = [p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts]
    modules = {_module_name(p) for p in files}
    return {_module_name(p): _imports(p, modules) for p in files}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of size > 1 (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            # a package's __init__ importing its own submodules is how packages re-export; a
            # submodule importing its package's __init__ is the other half: skip the parent edge
            if v.startswith(w + "."):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read() -> None:
    g = module_graph()
    assert "sgn_ros.training.trainer" in g and "sgn_ros.evaluation.network" in g["sgn_ros.training.trainer"]
    assert "sgn_ros.model.checkpoint" in g["sgn_ros.evaluation.network"]


def test_no_import_cycles() -> None:
    assert _cycles(module_graph()) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _edges(graph: dict[str, set[str]], src_prefixes: tuple[str, ...], dst_prefix: str) -> list[str]:
    return sorted(
        f"{m} -> {d}"
        for m, deps in graph.items()
        if m.startswith(src_prefixes)
        for d in deps
        if d == dst_prefix or d.startswith(dst_prefix + ".")
    )


def test_layer_rules() -> None:
    g = module_graph()
    lower = ("sgn_ros.model", "sgn_ros.data", "sgn_ros.evaluation", "sgn_ros.config", "sgn_ros.grid",
             "sgn_ros.labels", "sgn_ros.batch", "sgn_ros.errors", "sgn_ros.runtime", "sgn_ros.distributed",
             "sgn_ros.fileio", "sgn_ros.weights", "sgn_ros.viz")
    # training imports evaluation, never the reverse; nothing below training imports it
    assert _edges(g, lower, "sgn_ros.training") == []
    # nothing below ros imports ros (the CLI registry names ros modules only as strings)
    assert _edges(g, (*lower, "sgn_ros.training"), "sgn_ros.ros") == []
    # the error types sit at the bottom: they import nothing of the package
    assert g["sgn_ros.errors"] == set()
