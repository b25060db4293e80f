"""The icon set and the helper that finds it: every icon the app and the installer use exists at the
right size, the tray states look different, the committed renders match the SVGs, and the lookup works
from the repository, an override folder and a PyInstaller bundle."""

from __future__ import annotations

import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PySide6.QtGui import QColor, QImage

from client_gui.assets import asset_path, assets_root

REPO = Path(__file__).resolve().parents[2]
ICONS = REPO / "assets" / "icons"
APP_SIZES = (16, 32, 48, 64, 128, 256, 512)
TRAY_SIZES = (16, 22, 32, 64)
STATES = ("working", "idle", "paused", "offline", "error")
EXPECTED = [
    "app.svg",
    "app.ico",
    *(f"app-{size}.png" for size in APP_SIZES),
    *(f"tray-{state}.svg" for state in STATES),
    *(f"tray-{state}-{size}.png" for state in STATES for size in TRAY_SIZES),
]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_every_icon_is_there_at_its_size() -> None:
    for name in EXPECTED:
        assert (ICONS / name).is_file(), f"assets/icons/{name} is missing"
    for size in APP_SIZES:
        assert png_size((ICONS / f"app-{size}.png").read_bytes()) == (size, size)
    for state in STATES:
        for size in TRAY_SIZES:
            assert png_size((ICONS / f"tray-{state}-{size}.png").read_bytes()) == (size, size)
        svg = ET.parse(ICONS / f"tray-{state}.svg").getroot()
        assert svg.get("viewBox") == "0 0 64 64"


def test_the_windows_icon_holds_every_size_as_png() -> None:
    data = (ICONS / "app.ico").read_bytes()
    reserved, kind, count = struct.unpack("<HHH", data[:6])
    assert (reserved, kind) == (0, 1)
    sizes = []
    for index in range(count):
        width, height, _, _, planes, bits, length, offset = struct.unpack(
            "<BBBBHHII", data[6 + 16 * index : 22 + 16 * index]
        )
        side = width or 256
        assert (width, height, planes, bits) == (width, width, 1, 32)
        assert png_size(data[offset : offset + length]) == (side, side)
        sizes.append(side)
    assert sizes == [16, 24, 32, 48, 64, 128, 256]


def test_the_assets_stay_small() -> None:
    total = sum(path.stat().st_size for path in (REPO / "assets").rglob("*") if path.is_file())
    assert total < 1_000_000


def mean_colour(path: Path) -> QColor:
    """The average colour of the icon's opaque pixels."""
    image = QImage(str(path))
    assert not image.isNull()
    red = green = blue = count = 0
    for y in range(image.height()):
        for x in range(image.width()):
            pixel = image.pixelColor(x, y)
            if pixel.alpha() > 200:
                red, green, blue, count = (
                    red + pixel.red(),
                    green + pixel.green(),
                    blue + pixel.blue(),
                    count + 1,
                )
    return QColor(red // count, green // count, blue // count)


def test_tray_states_are_told_apart_by_colour_at_16_px() -> None:
    colours = {state: mean_colour(ICONS / f"tray-{state}-16.png") for state in STATES}
    hue = {state: colour.hsvHue() for state, colour in colours.items()}
    assert 90 <= hue["working"] <= 150  # green
    assert 190 <= hue["idle"] <= 230  # grey-blue
    assert 30 <= hue["paused"] <= 50  # amber
    assert hue["error"] <= 12 or hue["error"] >= 348  # red
    assert colours["offline"].hsvSaturation() < 40  # grey
    assert all(colours[s].hsvSaturation() > 70 for s in STATES if s != "offline")


def test_tray_states_carry_different_glyphs() -> None:
    # Same outline, different marks: no two states render the same shape (colour aside).
    masks = {}
    for state in STATES:
        image = QImage(str(ICONS / f"tray-{state}-32.png"))
        masks[state] = tuple(
            image.pixelColor(x, y).lightness() > 200 or image.pixelColor(x, y).lightness() < 60
            for y in range(32)
            for x in range(32)
        )
    assert len(set(masks.values())) == len(STATES)


def rgba(path: Path) -> bytes:
    image = QImage(str(path)).convertToFormat(QImage.Format.Format_RGBA8888)
    return bytes(image.constBits())


def test_the_committed_renders_match_the_svgs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "assets" / "make_icons.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    rendered = sorted(p.name for p in tmp_path.iterdir())
    assert rendered == sorted(name for name in EXPECTED if not name.endswith(".svg"))
    for name in rendered:
        if not name.endswith(".png"):
            continue
        fresh, committed = rgba(tmp_path / name), rgba(ICONS / name)
        assert len(fresh) == len(committed), name
        worst = max(abs(a - b) for a, b in zip(fresh, committed, strict=True))
        assert worst <= 8, f"{name} differs from its SVG: run python assets/make_icons.py"


def test_assets_are_found_in_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HIVEMIND_ASSETS", raising=False)
    assert assets_root() == REPO / "assets"
    assert asset_path("icons", "app.svg") == ICONS / "app.svg"


def test_assets_are_found_in_the_pyinstaller_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HIVEMIND_ASSETS", raising=False)
    (tmp_path / "assets" / "icons").mkdir(parents=True)
    (tmp_path / "assets" / "icons" / "app.svg").write_text("<svg/>")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert asset_path("icons", "app.svg") == tmp_path / "assets" / "icons" / "app.svg"


def test_the_override_folder_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "icons").mkdir()
    (tmp_path / "icons" / "app.svg").write_text("<svg/>")
    monkeypatch.setenv("HIVEMIND_ASSETS", str(tmp_path))
    assert asset_path("icons", "app.svg") == tmp_path / "icons" / "app.svg"
    with pytest.raises(FileNotFoundError) as error:
        asset_path("icons", "tray-working.svg")
    assert str(error.value) == (
        f"HiveMind's file icons/tray-working.svg is missing from {tmp_path}. "
        "Reinstall HiveMind, or unset HIVEMIND_ASSETS."
    )


def test_a_missing_asset_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HIVEMIND_ASSETS", raising=False)
    with pytest.raises(
        FileNotFoundError,
        match=r"HiveMind's file icons/nope.png is missing from .*\. Reinstall HiveMind\.",
    ):
        asset_path("icons", "nope.png")
