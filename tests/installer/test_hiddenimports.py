"""The bundle's module lists (installer/hiddenimports.py) against what is really there: every platform
backend and keyring backend the app may pick is a hidden import, every hidden import exists, and the
app's start-up imports stay clear of what the spec leaves out."""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import client_gui.platform
from installer.hiddenimports import (
    EXCLUDES,
    HIDDEN_IMPORTS,
    KEYRING_BACKENDS,
    PLATFORM_BACKENDS,
    bundle_file_wanted,
)

REPO = Path(__file__).resolve().parents[2]
OPTIONAL_IMPORTS = {"grpc_tools", "grpc_reflection"}
"""grpc/__init__.py imports these inside ``try: ... except ImportError`` (to alias grpc.tools and
grpc.reflection); the bundle leaves them out and grpc carries on without them."""


def platform_modules_on_disk() -> set[str]:
    """Every module and package under client_gui/platform/, found by walking the folder."""
    root = Path(client_gui.platform.__file__).parent
    found = {"client_gui.platform"}
    for info in pkgutil.walk_packages([str(root)], prefix="client_gui.platform."):
        found.add(info.name)
    return found


def test_every_platform_backend_module_is_a_hidden_import() -> None:
    on_disk = platform_modules_on_disk()
    assert {"client_gui.platform.idle.x11", "client_gui.platform.autostart.windows"} <= on_disk
    missing = sorted(on_disk - set(HIDDEN_IMPORTS))
    assert missing == [], f"add these to PLATFORM_BACKENDS in installer/hiddenimports.py: {missing}"
    stale = sorted(set(PLATFORM_BACKENDS) - on_disk)
    assert stale == [], f"PLATFORM_BACKENDS names modules that do not exist: {stale}"


def test_every_keyring_backend_the_app_may_pick_is_a_hidden_import() -> None:
    """keyring picks its backend from the entry points of the keyring distribution itself (keyrings.alt
    is excluded from the bundle on purpose: the app refuses its file backends)."""
    entry_points = importlib.metadata.distribution("keyring").entry_points
    modules = {ep.module for ep in entry_points if ep.group == "keyring.backends"}
    assert {"keyring.backends.SecretService", "keyring.backends.Windows"} <= modules
    missing = sorted(modules - set(KEYRING_BACKENDS))
    assert missing == [], f"add these to KEYRING_BACKENDS in installer/hiddenimports.py: {missing}"
    assert "keyrings" in EXCLUDES
    assert not any(name.startswith("keyrings.") for name in HIDDEN_IMPORTS)


@pytest.mark.parametrize("module", HIDDEN_IMPORTS)
def test_every_hidden_import_imports_on_this_os(module: str) -> None:
    """All of them import on every OS (OS-only libraries load inside functions), which is also what
    `hivemind --self-test` checks inside the bundle."""
    importlib.import_module(module)


def test_hidden_imports_are_not_excluded() -> None:
    clashes = [m for m in HIDDEN_IMPORTS if any(m == x or m.startswith(f"{x}.") for x in EXCLUDES)]
    assert clashes == []


def test_the_apps_start_up_imports_nothing_the_bundle_leaves_out() -> None:
    """The tray app, the worker and the self-test import none of the excluded packages (the coordinator's
    server side, dev tools, unused Qt modules); if they did, the bundle would fail at start-up."""
    code = (
        "import sys\n"
        "import client_gui.bundle_main, client_gui.engine.cli, client_gui.ui.app\n"
        "import client_gui.engine.benchmark, client_gui.engine.worker\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "PySide6.QtWidgets" in loaded
    excluded = [m for m in loaded if any(m == x or m.startswith(f"{x}.") for x in EXCLUDES)]
    assert sorted(set(excluded) - OPTIONAL_IMPORTS) == []


@pytest.mark.parametrize(
    ("dest", "kept"),
    [
        ("PySide6/Qt/plugins/platforms/libqxcb.so", True),
        ("PySide6/Qt/plugins/platforms/libqwayland.so", True),
        ("PySide6/Qt/plugins/platforms/libqoffscreen.so", True),
        ("PySide6/Qt/plugins/imageformats/libqsvg.so", True),
        ("PySide6/plugins/platforms/qwindows.dll", True),
        ("PySide6/Qt/plugins/platforms/libqvnc.so", False),
        ("PySide6/Qt/plugins/platforms/libqeglfs.so", False),
        ("PySide6/Qt/plugins/imageformats/libqpdf.so", False),
        ("PySide6/Qt/plugins/platformthemes/libqgtk3.so", False),
        ("PySide6/Qt/plugins/sqldrivers/libqsqlite.so", False),
        ("PySide6/Qt/translations/qtbase_de.qm", False),
        ("PySide6\\translations\\qtbase_de.qm", False),
        ("PySide6/Qt/lib/libQt6Network.so.6", False),
        ("PySide6/Qt/lib/libQt6Widgets.so.6", True),
        ("PySide6/QtCore.abi3.so", True),
        ("grpc/_cython/cygrpc.cpython-311-x86_64-linux-gnu.so", True),
        ("assets/icons/app.svg", True),
    ],
)
def test_bundle_file_filter(dest: str, kept: bool) -> None:
    assert bundle_file_wanted(dest) is kept
