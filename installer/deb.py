"""The Debian package's layout: control file, maintainer scripts, launcher, menu entry and icons around
the PyInstaller bundle, and the ``dpkg-deb`` call that packs them.

What the package installs (and ``dpkg -r`` removes again):

* ``/opt/hivemind/`` — the bundle (``/opt/hivemind/hivemind`` is the app);
* ``/usr/bin/hivemind`` — a symlink to it, so ``hivemind`` is on PATH;
* ``/usr/share/applications/hivemind.desktop`` — the menu entry;
* ``/usr/share/icons/hicolor/<size>/apps/hivemind.png`` (and ``scalable/apps/hivemind.svg``).

The user's own data (settings, keyring entries, the work folder) is never touched: see docs/INSTALLER.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "hivemind"
INSTALL_DIR = Path("opt") / PACKAGE
"""Where the bundle goes, relative to the root of the installed system."""
LAUNCHER = Path("usr") / "bin" / PACKAGE
DESKTOP_ENTRY = Path("usr") / "share" / "applications" / f"{PACKAGE}.desktop"
DOC_DIR = Path("usr") / "share" / "doc" / PACKAGE
ICON_THEME = Path("usr") / "share" / "icons" / "hicolor"
ICON_SIZES = (16, 32, 48, 64, 128, 256, 512)
"""The sizes of ``assets/icons/app-<size>.png`` that go into the hicolor theme."""

DEPENDS = (
    # The system libraries the bundle links to but does not carry (build.py checks this list against
    # the bundle with ldd, so a new dependency fails the build). The X11/xcb helper libraries Qt needs
    # (libxkbcommon-x11, libxcb-cursor, ...) are inside the bundle; libc6 and libstdc++6 are added
    # with the versions the bundle needs (DebPackage).
    "libegl1",
    "libgl1",
    "libdbus-1-3",
    "libxcb1",
    "libwayland-client0",
    "libwayland-cursor0",
    "libwayland-egl1",
)
RECOMMENDS = (
    # Tasks run in Docker containers only; without an engine the app says how to install one.
    "docker.io | docker-ce",
    # Qt draws text with the system's fonts.
    "fonts-dejavu-core | fonts-liberation2",
    # "Only when idle" reads idle time on X11 through the XScreenSaver extension.
    "libxss1",
)
SUGGESTS = (
    # An OS keyring keeps the sign-in and the node credential (Secret Service or KWallet).
    "gnome-keyring | kwalletmanager",
)

SUMMARY = "HiveMind volunteer computing: lend this computer, earn CPT"
DESCRIPTION = (
    "HiveMind's desktop app sits in the system tray and runs tasks for the HiveMind volunteer-computing "
    "platform in locked-down Docker containers when this computer is idle, paying CPT tokens for the "
    "work. It shows earnings, the machine's benchmark, running tasks and a wallet, and submits jobs.\n"
    "\n"
    "The package installs the app under /opt/hivemind with a menu entry and the `hivemind` command "
    "(`hivemind --worker` runs the headless worker; `hivemind --self-test --coordinator HOST:PORT` "
    "checks the installation)."
)

README_DEBIAN = """HiveMind for Debian and Ubuntu
=============================

The app lives in /opt/hivemind; `hivemind` (/usr/bin/hivemind) starts it, and so does the HiveMind
entry in the applications menu. `hivemind --worker --help` runs the headless worker instead, and
`hivemind --self-test --coordinator HOST:PORT` checks this installation.

Your data is yours: removing the package (apt remove, apt purge, dpkg -r, dpkg -P) never deletes it.
Per user, HiveMind keeps:

  ~/.config/hivemind/              settings (app.json), the worker's state (worker.json) and
                                   the app's task work folder (work/)
  ~/.cache/hivemind/work/          the task work folder of `hivemind --worker`
  ~/.config/autostart/hivemind.desktop   only if "Start at login" was on
  the OS keyring (service "hivemind"): the sign-in and the node credential
                                   (or ~/.config/hivemind/credentials.json without a keyring)

To remove them too, after uninstalling:

  rm -rf ~/.config/hivemind ~/.cache/hivemind
  rm -f ~/.config/autostart/hivemind.desktop
  secret-tool clear service hivemind     (GNOME keyring; in KDE use KWalletManager)
"""

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: HiveMind
License: GPL-3.0-or-later

Files: *
License: GPL-3.0-or-later
 On Debian systems the full text is in /usr/share/common-licenses/GPL-3.
 The bundle under /opt/hivemind also holds Python, Qt (PySide6, LGPL-3.0) and the other
 libraries the app uses, each under its own license.
"""

POSTINST = """#!/bin/sh
# Refresh the icon cache and the menu after installing HiveMind, where the desktop's tools exist.
set -e
if [ "$1" = configure ]; then
    if command -v gtk-update-icon-cache >/dev/null 2>&1 && [ -d /usr/share/icons/hicolor ]; then
        gtk-update-icon-cache -q -t -f /usr/share/icons/hicolor || true
    fi
    if command -v update-desktop-database >/dev/null 2>&1; then
        update-desktop-database -q /usr/share/applications || true
    fi
fi
exit 0
"""

POSTRM = """#!/bin/sh
# After removing HiveMind: drop anything left in its own folder and refresh the icon cache and menu.
# The user's data (~/.config/hivemind, ~/.cache/hivemind, keyring entries)
# is never touched, not even on purge: it belongs to the user (see /usr/share/doc/hivemind/README.Debian,
# which dpkg has removed by now, and docs/INSTALLER.md).
set -e
case "$1" in
    remove|purge)
        rm -rf /opt/hivemind
        if command -v gtk-update-icon-cache >/dev/null 2>&1 && [ -d /usr/share/icons/hicolor ]; then
            gtk-update-icon-cache -q -t -f /usr/share/icons/hicolor || true
        fi
        if command -v update-desktop-database >/dev/null 2>&1; then
            update-desktop-database -q /usr/share/applications || true
        fi
        ;;
esac
exit 0
"""


@dataclass(frozen=True)
class DebPackage:
    """What goes into ``DEBIAN/control`` besides the computed size."""

    version: str
    architecture: str = "amd64"
    maintainer: str = "HiveMind developers <hivemind@localhost>"
    depends: tuple[str, ...] = DEPENDS
    libc_version: str | None = None
    """The newest glibc symbol version the bundle uses (``libc6 (>= ...)``); None: any libc6."""
    libstdcxx_version: str | None = None
    """The GCC release whose C++ runtime the bundle needs (``libstdc++6 (>= ...)``)."""
    recommends: tuple[str, ...] = RECOMMENDS
    suggests: tuple[str, ...] = SUGGESTS
    extra_fields: dict[str, str] = field(default_factory=dict)

    @property
    def file_name(self) -> str:
        return f"{PACKAGE}_{self.version}_{self.architecture}.deb"

    def all_depends(self) -> list[str]:
        libc = f"libc6 (>= {self.libc_version})" if self.libc_version else "libc6"
        cxx = (
            f"libstdc++6 (>= {self.libstdcxx_version})" if self.libstdcxx_version else "libstdc++6"
        )
        return [libc, cxx, *self.depends]


def control_text(package: DebPackage, installed_size_kib: int) -> str:
    """The ``DEBIAN/control`` file (deb-control(5)): fields, then the description's indented body."""
    fields = {
        "Package": PACKAGE,
        "Version": package.version,
        "Architecture": package.architecture,
        "Maintainer": package.maintainer,
        "Installed-Size": str(installed_size_kib),
        "Depends": ", ".join(package.all_depends()),
        "Recommends": ", ".join(package.recommends),
        "Suggests": ", ".join(package.suggests),
        "Section": "net",
        "Priority": "optional",
        **package.extra_fields,
    }
    lines = [f"{name}: {value}" for name, value in fields.items() if value]
    # The long description: paragraphs wrapped under 80 columns, a blank line written as " ."
    body: list[str] = []
    for paragraph in DESCRIPTION.split("\n\n"):
        if body:
            body.append(" .")
        body += [f" {line}" for line in textwrap.wrap(paragraph, width=78)]
    return "\n".join([*lines, f"Description: {SUMMARY}", *body]) + "\n"


def desktop_entry_text() -> str:
    """The menu entry (freedesktop Desktop Entry spec); ``Icon`` names the hicolor theme icon."""
    return "\n".join(
        [
            "[Desktop Entry]",
            "Type=Application",
            "Version=1.0",
            "Name=HiveMind",
            "GenericName=Volunteer computing",
            "Comment=Lend this computer's spare power to HiveMind and earn CPT",
            f"Exec={PACKAGE}",
            f"TryExec={PACKAGE}",
            f"Icon={PACKAGE}",
            "Terminal=false",
            "Categories=Network;Utility;",
            "Keywords=volunteer;computing;worker;docker;CPT;",
            "StartupNotify=false",
            "",
        ]
    )


def tree_size_kib(root: Path) -> int:
    """Installed-Size as dpkg counts it: file sizes rounded up to KiB, one per symlink and directory."""
    total = 0
    for path in root.rglob("*"):
        if path.is_symlink() or path.is_dir():
            total += 1
        else:
            total += (path.stat().st_size + 1023) // 1024
    return total


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


def lay_out(root: Path, bundle: Path, icons: Path, package: DebPackage) -> None:
    """Build the package's file tree in ``root`` (emptied first) from the bundle and the icon set."""
    if not (bundle / PACKAGE).is_file():
        raise FileNotFoundError(f"{bundle} holds no {PACKAGE} executable: build the bundle first")
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    shutil.copytree(bundle, root / INSTALL_DIR, symlinks=True)
    launcher = root / LAUNCHER
    launcher.parent.mkdir(parents=True)
    launcher.symlink_to(Path("/") / INSTALL_DIR / PACKAGE)
    _write(root / DESKTOP_ENTRY, desktop_entry_text())
    for size in ICON_SIZES:
        target = root / ICON_THEME / f"{size}x{size}" / "apps" / f"{PACKAGE}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(icons / f"app-{size}.png", target)
    scalable = root / ICON_THEME / "scalable" / "apps" / f"{PACKAGE}.svg"
    scalable.parent.mkdir(parents=True)
    shutil.copyfile(icons / "app.svg", scalable)
    _write(root / DOC_DIR / "README.Debian", README_DEBIAN)
    _write(root / DOC_DIR / "copyright", COPYRIGHT)
    _normalise_modes(root)
    control = root / "DEBIAN"
    control.mkdir()
    _write(control / "postinst", POSTINST, 0o755)
    _write(control / "postrm", POSTRM, 0o755)
    _write(control / "control", control_text(package, tree_size_kib(root)))


def _normalise_modes(root: Path) -> None:
    """0755 for folders and executables, 0644 for the rest: what dpkg expects, whatever the umask."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            executable = path.stat().st_mode & 0o111
            path.chmod(0o755 if executable else 0o644)


def pack(root: Path, output: Path, *, compression_level: int = 6) -> Path:
    """``dpkg-deb --build`` with xz; files are owned by root whoever builds."""
    output.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "dpkg-deb",
            "--root-owner-group",
            "-Zxz",
            f"-z{compression_level}",
            "--build",
            str(root),
            str(output),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return output
