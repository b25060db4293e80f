"""The app's icons from ``assets/icons`` (found through :func:`client_gui.assets.asset_path`, which also
works inside the PyInstaller bundle): the app icon and the five tray states."""

from __future__ import annotations

import logging
from functools import cache

from PySide6.QtGui import QIcon

logger = logging.getLogger(__name__)

APP_SIZES = (16, 32, 48, 64, 128, 256, 512)
TRAY_SIZES = (16, 22, 32, 64)


def _icon(stem: str, sizes: tuple[int, ...]) -> QIcon:
    from client_gui.assets import asset_path

    icon = QIcon()
    for name in (f"{stem}.svg", *(f"{stem}-{size}.png" for size in sizes)):
        try:
            icon.addFile(str(asset_path("icons", name)))
        except FileNotFoundError:
            logger.debug("icon %s is missing", name)  # the other sizes still make an icon
    return icon


@cache
def app_icon() -> QIcon:
    return _icon("app", APP_SIZES)


@cache
def tray_icon(state: str) -> QIcon:
    """``state`` is one of working, idle, paused, offline, error."""
    return _icon(f"tray-{state}", TRAY_SIZES)
