"""The .deb's layout (installer/deb.py) and its packing with the real dpkg-deb: what a volunteer's
system gets, and what the build refuses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from installer import build, deb

REPO = Path(__file__).resolve().parents[2]
ICONS = REPO / "assets" / "icons"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A stand-in for dist/hivemind/: the executable and one library (the layout does not care)."""
    folder = tmp_path / "dist" / "hivemind"
    (folder / "_internal").mkdir(parents=True)
    app = folder / "hivemind"
    app.write_text("#!/bin/sh\necho hivemind\n")
    app.chmod(0o700)
    (folder / "_internal" / "libexample.so").write_bytes(b"\x7fELF" + bytes(2000))
    return folder


def parse_control(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if line.startswith(" "):
            fields[last] += "\n" + line
        else:
            last, _, value = line.partition(": ")
            fields[last] = value
    return fields


def test_layout_puts_the_app_launcher_menu_entry_and_icons_in_place(
    bundle: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    package = deb.DebPackage(version="1.2.3", libc_version="2.36", libstdcxx_version="12")
    deb.lay_out(root, bundle, ICONS, package)

    app = root / "opt" / "hivemind" / "hivemind"
    assert app.read_text() == "#!/bin/sh\necho hivemind\n"
    assert app.stat().st_mode & 0o777 == 0o755
    assert (root / "opt/hivemind/_internal/libexample.so").stat().st_mode & 0o777 == 0o644
    launcher = root / "usr" / "bin" / "hivemind"
    assert launcher.is_symlink() and str(launcher.readlink()) == "/opt/hivemind/hivemind"

    entry = (root / "usr/share/applications/hivemind.desktop").read_text()
    assert entry.startswith("[Desktop Entry]\n")
    assert {"Type=Application", "Name=HiveMind", "Exec=hivemind", "Icon=hivemind"} <= set(
        entry.splitlines()
    )
    for size in deb.ICON_SIZES:
        icon = root / f"usr/share/icons/hicolor/{size}x{size}/apps/hivemind.png"
        assert icon.read_bytes() == (ICONS / f"app-{size}.png").read_bytes()
    svg = root / "usr/share/icons/hicolor/scalable/apps/hivemind.svg"
    assert svg.read_bytes() == (ICONS / "app.svg").read_bytes()
    readme = (root / "usr/share/doc/hivemind/README.Debian").read_text()
    assert "~/.config/hivemind/" in readme and "never deletes it" in readme

    control = parse_control((root / "DEBIAN" / "control").read_text())
    assert control["Package"] == "hivemind"
    assert control["Version"] == "1.2.3"
    assert control["Architecture"] == "amd64"
    depends = control["Depends"].split(", ")
    assert depends[:2] == ["libc6 (>= 2.36)", "libstdc++6 (>= 12)"]
    assert {"libegl1", "libgl1", "libxcb1", "libdbus-1-3"} <= set(depends)
    assert "docker.io | docker-ce" in control["Recommends"].split(", ")
    assert int(control["Installed-Size"]) >= 2  # KiB, counted as dpkg does
    assert control["Description"].startswith(deb.SUMMARY)
    for script in ("postinst", "postrm"):
        path = root / "DEBIAN" / script
        assert path.stat().st_mode & 0o777 == 0o755
        subprocess.run(["sh", "-n", str(path)], check=True)
    assert "rm -rf /opt/hivemind" in (root / "DEBIAN" / "postrm").read_text()
    assert ".config" not in (root / "DEBIAN" / "postrm").read_text().split("set -e", 1)[1]


def test_layout_refuses_a_folder_without_the_app(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="holds no hivemind executable"):
        deb.lay_out(tmp_path / "root", tmp_path, ICONS, deb.DebPackage(version="1"))
    assert not (tmp_path / "root").exists()


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is Debian/Ubuntu only")
def test_packed_deb_holds_the_tree_owned_by_root(bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    package = deb.DebPackage(version="1.2.3", architecture="amd64")
    deb.lay_out(root, bundle, ICONS, package)
    output = deb.pack(root, tmp_path / "out" / package.file_name, compression_level=1)
    assert output.name == "hivemind_1.2.3_amd64.deb"

    info = subprocess.run(
        ["dpkg-deb", "--field", str(output), "Package", "Version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert info.splitlines() == ["Package: hivemind", "Version: 1.2.3"]
    listing = subprocess.run(
        ["dpkg-deb", "--contents", str(output)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    entries = {line.split()[5]: line for line in listing}
    assert "./opt/hivemind/hivemind" in entries
    assert entries["./usr/bin/hivemind"].endswith("./usr/bin/hivemind -> /opt/hivemind/hivemind")
    assert "./usr/share/applications/hivemind.desktop" in entries
    assert "./usr/share/icons/hicolor/48x48/apps/hivemind.png" in entries
    assert all(line.split()[1] == "root/root" for line in listing)
    compression = subprocess.run(
        ["ar", "t", str(output)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "data.tar.xz" in compression


def test_depends_parsing_reads_names_from_relations() -> None:
    assert build._package_names("libc6 (>= 2.36), docker.io | docker-ce, libx:any") == {
        "libc6",
        "docker.io",
        "docker-ce",
        "libx",
    }


def test_build_reads_the_version_the_app_reports() -> None:
    from coordinator import __version__

    assert build.project_version() == __version__


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump comes with binutils")
def test_symbol_versions_of_a_real_qt_library(tmp_path: Path) -> None:
    """The libc6/libstdc++6 minimums come from the binaries' own symbol versions."""
    import PySide6

    qt_core = next(Path(PySide6.__file__).parent.rglob("libQt6Core.so.6"), None)
    if qt_core is None:
        pytest.skip("PySide6's Linux libraries are not here")
    assert build.symbol_version_needed(tmp_path, "GLIBC") is None  # no binaries, no requirement
    shutil.copyfile(qt_core, tmp_path / qt_core.name)
    glibc = build.symbol_version_needed(tmp_path, "GLIBC")
    assert glibc is not None and glibc >= (2, 17)
    assert build.libstdcxx_version_needed(tmp_path) in set(build.GLIBCXX_TO_GCC.values())
