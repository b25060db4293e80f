"""Render HiveMind's PNG icons and ``app.ico`` from the hand-written SVGs in ``assets/icons``.

    python assets/make_icons.py [--out DIR]

Run it after changing an SVG and commit what it writes: the PNGs and the .ico are inputs of the installer
build. Rendering uses Qt's SVG renderer offscreen (no display needed). The .ico holds one PNG per size,
as Windows Vista and later read them.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from collections.abc import Sequence
from pathlib import Path

ICONS = Path(__file__).resolve().parent / "icons"
APP_SIZES = (16, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
TRAY_STATES = ("working", "idle", "paused", "offline", "error")
TRAY_SIZES = (16, 22, 32, 64)


def render_png(svg: Path, size: int) -> bytes:
    """``svg`` drawn into a transparent ``size`` x ``size`` square, as PNG bytes."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg} is not a valid SVG for Qt's renderer")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    # Quality 0 is zlib's strongest compression for PNG. PySide6 takes the format as str at run time
    # (its stubs say bytes).
    png = image.convertToFormat(QImage.Format.Format_ARGB32)
    if not png.save(buffer, "PNG", 0):  # type: ignore[call-overload]
        raise SystemExit(f"Qt could not encode {svg} at {size} px as PNG")
    buffer.close()
    return bytes(data.data())


def ico_bytes(pngs: Sequence[tuple[int, bytes]]) -> bytes:
    """An .ico file holding the PNG images ``(size, png)``; size 256 is written as 0, as the format says."""
    header = struct.pack("<HHH", 0, 1, len(pngs))
    offset = len(header) + 16 * len(pngs)
    entries, images = b"", b""
    for size, png in pngs:
        side = 0 if size >= 256 else size
        entries += struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(png), offset + len(images))
        images += png
    return header + entries + images


def render_all(out: Path, source: Path = ICONS) -> list[Path]:
    """Write every PNG and ``app.ico`` into ``out``; returns the files written."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def write(name: str, data: bytes) -> None:
        path = out / name
        path.write_bytes(data)
        written.append(path)

    for size in APP_SIZES:
        write(f"app-{size}.png", render_png(source / "app.svg", size))
    write("app.ico", ico_bytes([(s, render_png(source / "app.svg", s)) for s in ICO_SIZES]))
    for state in TRAY_STATES:
        for size in TRAY_SIZES:
            write(f"tray-{state}-{size}.png", render_png(source / f"tray-{state}.svg", size))
    del app
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ICONS, help="where to write (default: the icons)"
    )
    args = parser.parse_args(argv)
    written = render_all(args.out)
    total = sum(path.stat().st_size for path in written)
    print(f"wrote {len(written)} files ({total / 1024:.0f} KiB) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
