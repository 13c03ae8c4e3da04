"""The layout's two rules, read from the source with ast (nothing imported): the other packages import annotate only
from ``annotate.core`` (and ``annotate.sources`` for corpus readers), and no module imports itself back through
a chain of imports (lazy, function-level imports included)."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("annotate", "training", "baselines", "benchmark")
ANNOTATE_FOR_OTHERS = ("annotate.core", "annotate.sources")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _executed_nodes(tree: ast.AST):
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` blocks (imports for type hints only)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imported_names(source: str, name: str, known: set[str], is_package: bool = False) -> set[str]:
    """Every module the module ``name`` imports anywhere in ``source`` (``from a import b`` counts as a.b where that
    is a module of ``known``)."""
    package = name.split(".") if is_package else name.split(".")[:-1]
    out: set[str] = set()
    for node in _executed_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            out.update(subs)
            if len(subs) < len(node.names):
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: {t for t in imported_names(path.read_text(), name, known, path.name == "__init__.py") if t in known and t != name}
            for name, path in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None (iterative depth-first search)."""
    state: dict[str, int] = {}
    for root in sorted(edges):
        if state.get(root):
            continue
        stack = [(root, iter(sorted(edges[root])))]
        path = [root]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(sorted(edges[nxt]))))
    return None


def allowed_from_outside(target: str) -> bool:
    """Whether a module outside annotate may import ``target``."""
    if target != "annotate" and not target.startswith("annotate."):
        return True
    return any(target == allowed or target.startswith(allowed + ".") for allowed in ANNOTATE_FOR_OTHERS)


def test_other_packages_import_annotate_only_from_core_and_sources():
    known = set(modules())
    bad = [f"{path.relative_to(REPO)} imports {target}"
           for pkg in PACKAGES[1:] for path in sorted((REPO / pkg).rglob("*.py"))
           for target in sorted(imported_names(path.read_text(), module_name(path), known, path.name == "__init__.py"))
           if not allowed_from_outside(target)]
    assert not bad, "\n".join(bad)


def test_no_import_cycle_between_modules():
    edges = graph()
    assert len(edges) > 80 and "annotate.pipeline.build" in edges["annotate.pipeline.commands"]  # the graph is the real one
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges))


def test_the_checks_catch_what_they_look_for():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    known = set(modules())
    source = "def f():\n    from annotate.show import find_row\nfrom annotate.core import spectral\nfrom ..core.dataset import iter_rows\n"
    found = imported_names(source, "annotate.hub.card", known)
    assert {"annotate.show", "annotate.core.spectral", "annotate.core.dataset"} <= found
    typing_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .build import BuildConfig\n"
    assert "annotate.pipeline.build" not in imported_names(typing_only, "annotate.pipeline.labelled", known)
    assert not allowed_from_outside("annotate.show") and not allowed_from_outside("annotate.pipeline.build")
    assert allowed_from_outside("annotate.core.spectral") and allowed_from_outside("annotate.sources.wavefake")
    assert allowed_from_outside("numpy") and not allowed_from_outside("annotate")
