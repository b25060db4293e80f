"""``client_gui/engine`` (and the platform layer under it) never imports Qt, so the headless worker runs
on a server without Qt's libraries and the engine stays testable without a GUI."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import client_gui.engine
import client_gui.platform

REPO = Path(__file__).resolve().parents[1]
ENGINE = REPO / "client_gui" / "engine"
QT_PACKAGES = ("PySide6", "PySide2", "PyQt5", "PyQt6", "shiboken6", "shiboken2", "sip")


def imported_modules(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif (  # importlib.import_module("PySide6...") / __import__("PySide6")
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id == "__import__")
            )
        ):
            names.append(node.args[0].value)
    return names


def is_qt(module: str) -> bool:
    return module.split(".")[0] in QT_PACKAGES or module.split(".")[0].startswith("PyQt")


def test_no_engine_source_imports_qt() -> None:
    files = sorted(ENGINE.rglob("*.py"))
    assert len(files) > 10  # the walk found the engine
    offenders = [
        f"{path.relative_to(REPO)}: {module}"
        for path in files
        for module in imported_modules(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        if is_qt(module)
    ]
    assert offenders == []


def test_the_check_catches_qt_imports() -> None:
    source = "import PySide6.QtCore\nfrom PyQt6 import QtWidgets\nimport importlib\nimportlib.import_module('shiboken6')\n"
    assert [m for m in imported_modules(ast.parse(source)) if is_qt(m)] == [
        "PySide6.QtCore",
        "PyQt6",
        "shiboken6",
    ]


def all_modules(package: object) -> list[str]:
    path = package.__path__  # type: ignore[attr-defined]
    prefix = package.__name__ + "."  # type: ignore[attr-defined]
    return [package.__name__] + [m.name for m in pkgutil.walk_packages(path, prefix)]  # type: ignore[attr-defined]


def test_importing_the_engine_and_platform_loads_no_qt() -> None:
    modules = (
        all_modules(client_gui.engine) + all_modules(client_gui.platform) + ["client_gui.assets"]
    )
    assert "client_gui.engine.preferences" in modules and "client_gui.platform.idle.x11" in modules
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{list(QT_PACKAGES)!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
