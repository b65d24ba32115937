"""Imports go one way: domain packages never import Reflex or the UI layers."""

from __future__ import annotations

import ast
from pathlib import Path

from carmenta.settings import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "carmenta"
UI_MODULES = {"carmenta.carmenta", "carmenta.pages", "carmenta.state", "carmenta.components"}
# Modules that exist to start or build the web app may know about Reflex.
LAUNCH_MODULES = {"launcher.py", "frontend_build.py", "cli.py"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _domain_files() -> list[Path]:
    files = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        top = relative.parts[0]
        if top in ("pages", "state", "components", "carmenta.py") or top in LAUNCH_MODULES:
            continue
        files.append(path)
    return files


def test_domain_packages_never_import_reflex_or_ui_layers():
    offenders = []
    for path in _domain_files():
        for name in _imports(path):
            if name == "reflex" or name.startswith(("reflex.", "reflex_")):
                offenders.append(f"{path.relative_to(PROJECT_ROOT)} imports {name}")
            if any(name == ui or name.startswith(ui + ".") for ui in UI_MODULES):
                offenders.append(f"{path.relative_to(PROJECT_ROOT)} imports {name}")
    assert _domain_files(), "no domain modules found"
    assert offenders == []


def test_state_never_imports_pages_and_components_never_run_sql():
    offenders = []
    for path in (PACKAGE / "state").rglob("*.py"):
        for name in _imports(path):
            if name.startswith(("carmenta.pages", "carmenta.components")):
                offenders.append(f"{path.name} imports {name}")
            if name.startswith(("sqlalchemy", "sqlmodel", "psycopg")):
                offenders.append(f"{path.name} runs SQL through {name}")
    assert offenders == []
