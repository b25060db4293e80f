"""Where the app's files (icons) are: one lookup that works from the source tree, an installed bundle
and a test that points elsewhere.

Order: ``$HIVEMIND_ASSETS`` when set (an explicit override wins everywhere), then ``sys._MEIPASS/assets``
inside the PyInstaller bundle, then the repository's ``assets/`` folder next to ``client_gui/``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ASSETS_ENV = "HIVEMIND_ASSETS"


def assets_root() -> Path:
    """The folder the app's assets are read from."""
    override = os.environ.get(ASSETS_ENV)
    if override:
        return Path(override)
    bundle = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and bundle:
        return Path(bundle) / "assets"
    return Path(__file__).resolve().parent.parent / "assets"


def asset_path(*parts: str) -> Path:
    """The path of the asset ``parts`` (``asset_path("icons", "app.svg")``); ``FileNotFoundError`` with a
    sentence when it is missing."""
    root = assets_root()
    path = root.joinpath(*parts)
    if not path.is_file():
        name = "/".join(parts)
        raise FileNotFoundError(
            f"HiveMind's file {name} is missing from {root}. Reinstall HiveMind"
            + (f", or unset {ASSETS_ENV}" if os.environ.get(ASSETS_ENV) else "")
            + "."
        )
    return path
