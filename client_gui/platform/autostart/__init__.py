"""Start the app when the person logs in, with the entry each OS expects:

* Linux and other freedesktop desktops: ``$XDG_CONFIG_HOME/autostart/hivemind.desktop`` (:mod:`.linux`);
* Windows: the ``HiveMind`` value of ``HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run``
  (:mod:`.windows`);
* macOS: ``~/Library/LaunchAgents/org.hivemind.app.plist`` (:mod:`.macos`).

:func:`default_autostart` picks one. Changes raise :class:`AutostartError` with a sentence.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

logger = logging.getLogger(__name__)

APP_NAME = "HiveMind"


class AutostartError(Exception):
    """Start at login could not be changed; ``str()`` is a sentence for the user."""


class Autostart(Protocol):
    @property
    def description(self) -> str:
        """Where the entry lives, for the settings page (e.g. the .desktop file's path)."""
        ...

    def enable(self, command: Sequence[str]) -> None:
        """Start ``command`` (program and arguments, unquoted) at login; replaces an older entry."""
        ...

    def disable(self) -> None:
        """Remove the entry; nothing happens when there is none."""
        ...

    def is_enabled(self) -> bool: ...


class MemoryAutostart:
    """Start at login kept in memory: for tests and demos that must not touch the real login items."""

    description = "simulated (nothing is written)"

    def __init__(self) -> None:
        self.command: list[str] | None = None

    def enable(self, command: Sequence[str]) -> None:
        if not command:
            raise AutostartError("Start at login needs the command that opens HiveMind.")
        self.command = list(command)

    def disable(self) -> None:
        self.command = None

    def is_enabled(self) -> bool:
        return self.command is not None


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (mode 0644, as login items must not be writable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


class FileAutostart(ABC):
    """An autostart entry that is one file: written whole by :meth:`enable`, deleted by :meth:`disable`."""

    login_items = "the programs started at login"
    """How this OS names the list the entry joins, for the sentences below."""
    add_instead = "Check that you can write to that folder."
    """What the person can do when the file cannot be written."""

    @property
    @abstractmethod
    def path(self) -> Path: ...

    @abstractmethod
    def render(self, command: Sequence[str]) -> str:
        """The file's text for ``command``; :class:`AutostartError` for an empty command."""

    @abstractmethod
    def is_enabled(self) -> bool: ...

    def enable(self, command: Sequence[str]) -> None:
        text = self.render(command)
        try:
            write_text_atomic(self.path, text)
        except OSError as exc:
            logger.error("Cannot write %s: %r", self.path, exc)
            raise AutostartError(
                f"HiveMind could not add itself to {self.login_items} ({self.path}: "
                f"{exc.strerror or exc}). {self.add_instead}"
            ) from exc

    def disable(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            logger.error("Cannot remove %s: %r", self.path, exc)
            raise AutostartError(
                f"HiveMind could not remove itself from {self.login_items}: delete {self.path} "
                f"by hand ({exc.strerror or exc})."
            ) from exc


def default_autostart(platform: str | None = None) -> Autostart:
    """The autostart entry for this OS (``platform``: ``sys.platform`` by default, for tests)."""
    platform = platform if platform is not None else sys.platform
    if platform == "win32":
        from client_gui.platform.autostart.windows import RunKeyAutostart

        return RunKeyAutostart()
    if platform == "darwin":
        from client_gui.platform.autostart.macos import LaunchAgentAutostart

        return LaunchAgentAutostart()
    from client_gui.platform.autostart.linux import XdgAutostart

    return XdgAutostart()


__all__ = [
    "APP_NAME",
    "Autostart",
    "AutostartError",
    "FileAutostart",
    "MemoryAutostart",
    "default_autostart",
    "write_text_atomic",
]
