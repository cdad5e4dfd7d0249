"""The package's shape: no import cycle (imports inside functions count), the library never imports
`baselines` or `paper_figures`, and every module outside the network definitions reads in one sitting."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "unidad"
MAX_LINES = 450
NETWORK_DEFINITIONS = PACKAGE / "backbones"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every project module `path` imports, at any depth of the file."""
    found = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules}
    own = _module_name(path)  # a package's __init__ importing its own submodules is no cycle
    return {name for name in found if name != own and (name in modules or name.split(".")[0] in ("baselines", "paper_figures"))}


def _graph():
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(f) for f in files}
    return {_module_name(f): _imports(f, modules) for f in files}


def _cycles(graph):
    """Strongly connected components with more than one module (or a module importing itself)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_in_the_package():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_library_imports_neither_baselines_nor_paper_figures():
    offenders = {m: sorted(i for i in imports if i.split(".")[0] in ("baselines", "paper_figures"))
                 for m, imports in _graph().items()}
    assert {m: i for m, i in offenders.items() if i} == {}


def test_modules_read_in_one_sitting():
    long = {str(f.relative_to(ROOT)): n for f in PACKAGE.rglob("*.py")
            if NETWORK_DEFINITIONS not in f.parents and (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert long == {}
