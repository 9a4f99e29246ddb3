"""The architecture, checked: `core` imports only downwards, with no import cycle between its
modules, and never imports `experiments`, `cli` or the API; no module grows past 300 lines
without saying why."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"core": "dlrun.core", "cli": "dlrun.cli", "experiments": "dlrun.experiments", "api": "dlrun"}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [PACKAGES[rel.parts[0]], *rel.parts[1:]]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in the file (inside functions too), absolute."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return found


def graph(folder: str) -> dict[str, set[str]]:
    files = {module_name(p): p for p in (ROOT / folder).rglob("*.py")}
    return {m: {i for i in imports_of(p) if i in files and i != m} for m, p in files.items()}


def test_core_has_no_import_cycle():
    edges = graph("core")
    # a package's __init__ re-exporting its modules is not a dependency of those modules on it
    edges = {m: {i for i in deps if not m.startswith(i + ".")} for m, deps in edges.items()}
    state: dict[str, str] = {}

    def visit(m, stack):
        state[m] = "open"
        for dep in sorted(edges[m]):
            assert state.get(dep) != "open", "import cycle: " + " -> ".join([*stack, m, dep])
            if dep not in state:
                visit(dep, [*stack, m])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [])


def test_core_never_imports_experiments_cli_or_the_api():
    for path in (ROOT / "core").rglob("*.py"):
        bad = {i for i in imports_of(path) if i.startswith(("dlrun.experiments", "dlrun.cli")) or i == "dlrun"}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_modules_stay_under_300_lines_or_say_why():
    for folder in ("core", "cli", "experiments", "api"):
        for path in (ROOT / folder).rglob("*.py"):
            lines = path.read_text().count("\n")
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            assert lines <= 300 or "300 lines" in doc, f"{path.relative_to(ROOT)}: {lines} lines and no stated reason"
