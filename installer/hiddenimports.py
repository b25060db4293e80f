"""What the PyInstaller bundle must contain beyond what its entry point visibly imports, and what it
must leave out. The spec (installer/hivemind.spec) reads these lists; tests/installer checks that
:data:`HIDDEN_IMPORTS` names every platform backend and keyring backend the app may pick, so adding
a backend module without adding it here fails a test instead of a volunteer's installation.

The lists are written out by hand on purpose: the test enumerates the packages on disk and compares.
No imports beyond the standard library: the spec, build.py and the tests load this file directly.
"""

from __future__ import annotations

from pathlib import PurePosixPath

PLATFORM_BACKENDS: tuple[str, ...] = (
    # Each concern picks its module in one factory at run time, so PyInstaller may not see the pick.
    "client_gui.platform",
    "client_gui.platform.idle",
    "client_gui.platform.idle.macos",
    "client_gui.platform.idle.wayland",
    "client_gui.platform.idle.windows",
    "client_gui.platform.idle.x11",
    "client_gui.platform.autostart",
    "client_gui.platform.autostart.linux",
    "client_gui.platform.autostart.macos",
    "client_gui.platform.autostart.windows",
    "client_gui.platform.power",
)

KEYRING_BACKENDS: tuple[str, ...] = (
    # keyring finds its backends through entry points (the spec copies keyring's metadata for them).
    # keyrings.alt is left out: its file backends are below the priority the app accepts as an OS
    # keyring (client_gui/engine/identity.py), and the worker's --credential-file has its own store.
    "keyring.backends",
    "keyring.backends.SecretService",
    "keyring.backends.kwallet",
    "keyring.backends.libsecret",
    "keyring.backends.Windows",
    "keyring.backends.macOS",  # its .api submodule loads macOS's Security framework: macOS only,
    # and keyring's own PyInstaller hook collects every keyring.backends submodule anyway.
    "keyring.backends.chainer",
    "keyring.backends.fail",
    "keyring.backends.null",
    # SecretService talks D-Bus through these (imported inside try blocks); the Wayland idle source
    # loads them by name (client_gui/platform/idle/wayland.py).
    "secretstorage",
    "jeepney",
    "jeepney.io.blocking",
    "jeepney.wrappers",
)

LIBRARY_IMPORTS: tuple[str, ...] = (
    # Loaded lazily or by name: the GPU probes, the gRPC health check the self-test uses, and
    # platformdirs' per-OS modules.
    "pynvml",
    "GPUtil",
    "grpc_health.v1.health_pb2",
    "grpc_health.v1.health_pb2_grpc",
    "platformdirs.unix",
    "platformdirs.windows",
    "platformdirs.macos",
    # Qt: the modules the app uses (the app's own imports normally bring them in; listed so the
    # bundle has them even while a view is imported lazily).
    "PySide6.QtCore",
    "PySide6.QtGui",
    "PySide6.QtWidgets",
    "PySide6.QtSvg",
)

HIDDEN_IMPORTS: tuple[str, ...] = PLATFORM_BACKENDS + KEYRING_BACKENDS + LIBRARY_IMPORTS

EXCLUDES: tuple[str, ...] = (
    # The coordinator's server side: the app and the worker import only coordinator/__init__ (the
    # version) and coordinator/logging_setup.
    "coordinator.server",
    "coordinator.api",
    "coordinator.rpc",
    "coordinator.db",
    "coordinator.demo",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlmodel",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "psycopg_binary",
    "psycopg_pool",
    "redis",
    "argon2",
    "jwt",
    "email_validator",
    "prometheus_client",
    "grpc_tools",
    "grpc_reflection",
    "keyrings",
    # Development and test tools.
    "pytest",
    "_pytest",
    "pytestqt",
    "hypothesis",
    "schemathesis",
    "playwright",
    "mypy",
    "ruff",
    "setuptools",
    "pkg_resources",
    "pip",
    "tkinter",
    "_tkinter",
    "IPython",
    "numpy",
    "paramiko",
    # Qt modules the app does not use (each would pull in its libraries and plugins).
    "PySide6.QtNetwork",
    "PySide6.QtDBus",  # Qt's own D-Bus library stays (QtGui links it); the Python module is unused
    "PySide6.QtQml",
    "PySide6.QtQuick",
    "PySide6.QtQuickWidgets",
    "PySide6.QtQuickControls2",
    "PySide6.QtOpenGL",
    "PySide6.QtOpenGLWidgets",
    "PySide6.QtPdf",
    "PySide6.QtPdfWidgets",
    "PySide6.QtPrintSupport",
    "PySide6.QtSql",
    "PySide6.QtTest",
    "PySide6.QtXml",
    "PySide6.QtConcurrent",
    "PySide6.QtDesigner",
    "PySide6.QtHelp",
    "PySide6.QtUiTools",
    "PySide6.QtStateMachine",
    "PySide6.QtCharts",
    "PySide6.QtMultimedia",
    "PySide6.QtWebEngineCore",
    "PySide6.QtWebEngineWidgets",
    "PySide6.Qt3DCore",
)

QT_PLUGINS: dict[str, frozenset[str]] = {
    # The Qt plugins the app needs, by plugin folder and name (file name without "lib" and the
    # extension, so one list serves .so, .dll and .dylib). Every other plugin PyInstaller's Qt hooks
    # collect (eglfs, vnc, pdf/webp/tiff image formats, evdev input, TLS, printing) is left out.
    "platforms": frozenset({"qxcb", "qwayland", "qoffscreen", "qminimal", "qwindows", "qcocoa"}),
    # Not qgtk3: it would pull the build machine's GTK 3 stack (~15 MB) into the bundle.
    "platformthemes": frozenset({"qxdgdesktopportal"}),
    "platforminputcontexts": frozenset(
        {"composeplatforminputcontextplugin", "ibusplatforminputcontextplugin"}
    ),
    "imageformats": frozenset({"qsvg", "qico"}),
    "iconengines": frozenset({"qsvgicon"}),
    "xcbglintegrations": frozenset({"qxcb-egl-integration", "qxcb-glx-integration"}),
    "styles": frozenset({"qmodernwindowsstyle", "qmacstyle"}),
    "wayland-shell-integration": frozenset({"xdg-shell"}),
    "wayland-decoration-client": frozenset({"bradient"}),
    "wayland-graphics-integration-client": frozenset({"qt-plugin-wayland-egl"}),
}

QT_LIBRARIES_DROPPED: tuple[str, ...] = (
    # Qt libraries PyInstaller's Qt hooks collect that nothing kept links to (only the embedded-Linux
    # eglfs platform, which is left out above, uses these).
    "Qt6EglFSDeviceIntegration",
    "Qt6EglFsKmsSupport",
    # Only the QtNetwork Python module (excluded) links to this.
    "Qt6Network",
)

CTYPES_LIBRARIES: tuple[str, ...] = (
    # System libraries the app opens with ctypes (client_gui/platform/idle/x11.py), which no linker
    # dependency points to: kept in the bundle so idle detection works where they are not installed.
    "libXss.so",
    "libX11.so",
)

SYSTEM_LIBRARIES: tuple[str, ...] = (
    # Taken from the system rather than bundled (installer/deb.py depends on their packages):
    # D-Bus's client library must match the system's bus (and drags in systemd, gcrypt, lz4, zstd),
    # and a bundled C++ runtime older than the system's breaks Mesa's GL drivers, which Qt loads.
    "libdbus-1.so",
    "libstdc++.so",
    "libgcc_s.so",
)


def bundle_file_wanted(dest: str) -> bool:
    """Whether a file PyInstaller collected belongs in the bundle, by its path inside the bundle:
    Qt's translations, the Qt plugins :data:`QT_PLUGINS` does not list and the libraries in
    :data:`QT_LIBRARIES_DROPPED` do not; everything else does. Qt's files sit under
    ``PySide6/Qt/`` on Linux and macOS and under ``PySide6/`` on Windows."""
    path = PurePosixPath(dest.replace("\\", "/"))
    parts = path.parts
    if any(path.name.startswith((f"lib{lib}.", f"{lib}.")) for lib in QT_LIBRARIES_DROPPED):
        return False
    if not parts or parts[0] != "PySide6":
        return True
    if "translations" in parts:
        return False  # the app is in English; Qt's own translations are several MB
    if "plugins" in parts and len(parts) == parts.index("plugins") + 3:
        folder, stem = parts[-2], parts[-1].split(".")[0].removeprefix("lib")
        return stem in QT_PLUGINS.get(folder, frozenset())
    return True
