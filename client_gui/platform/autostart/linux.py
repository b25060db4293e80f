"""Start at login on Linux (GNOME, KDE, Xfce, ...): an XDG autostart entry, a ``.desktop`` file in
``$XDG_CONFIG_HOME/autostart`` (``~/.config/autostart`` when unset), per the freedesktop Desktop
Application Autostart and Desktop Entry specifications.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from client_gui.platform.autostart import APP_NAME, AutostartError, FileAutostart

ENTRY_NAME = "hivemind.desktop"
ICON_NAME = "hivemind"
"""The icon theme name the Linux package installs (``/usr/share/icons/hicolor/*/apps/hivemind.png``)."""
RESERVED = frozenset(" \t\n\"'\\><~|&;$*?#()`")
"""Characters that make an Exec argument need quoting (Desktop Entry spec, "The Exec key")."""
ESCAPED_IN_QUOTES = frozenset('"`$\\')


def quote_exec_arg(arg: str) -> str:
    """One Exec argument: in double quotes when it holds a reserved character (or is empty), with
    ``" ` $ \\`` escaped by a backslash inside them; ``%`` doubled, as it starts a field code."""
    if arg and not RESERVED.intersection(arg):
        quoted = arg
    else:
        inner = "".join(f"\\{c}" if c in ESCAPED_IN_QUOTES else c for c in arg)
        quoted = f'"{inner}"'
    return quoted.replace("%", "%%")


def escape_string_value(value: str) -> str:
    """A value as the Desktop Entry "string" type writes it: ``\\\\``, ``\\n``, ``\\t``, ``\\r`` escapes.

    Applied after the Exec quoting, so a literal backslash in a quoted argument ends up as four."""
    return (
        value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    )


def exec_value(command: Sequence[str]) -> str:
    """The ``Exec=`` value that runs ``command`` (program and arguments, unquoted)."""
    return escape_string_value(" ".join(quote_exec_arg(arg) for arg in command))


def desktop_entry(command: Sequence[str], icon: str | None = None) -> str:
    """The text of HiveMind's autostart ``.desktop`` file."""
    if not command:
        raise AutostartError("Start at login needs the command that opens HiveMind.")
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.0",
        f"Name={APP_NAME}",
        "Comment=Lend this computer to HiveMind when you are not using it",
        f"Exec={exec_value(command)}",
        "Terminal=false",
        "X-GNOME-Autostart-enabled=true",
    ]
    if icon:
        lines.append(f"Icon={escape_string_value(icon)}")
    return "\n".join(lines) + "\n"


def _entry_keys(text: str) -> dict[str, str]:
    """The ``[Desktop Entry]`` group's keys (raw values); other groups and comments are skipped."""
    keys: dict[str, str] = {}
    group = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if sep and group == "Desktop Entry":
            keys[key.strip()] = value.strip()
    return keys


class XdgAutostart(FileAutostart):
    """HiveMind's entry in the XDG autostart folder (``config_home``: ``$XDG_CONFIG_HOME`` or
    ``~/.config``, looked up at each call when not given)."""

    def __init__(self, config_home: Path | None = None, *, icon: str | None = ICON_NAME) -> None:
        self._config_home = config_home
        self.icon = icon

    @property
    def path(self) -> Path:
        home = self._config_home
        if home is None:
            env = os.environ.get("XDG_CONFIG_HOME", "")
            # The spec ignores a relative XDG_CONFIG_HOME.
            home = Path(env) if env and os.path.isabs(env) else Path.home() / ".config"
        return home / "autostart" / ENTRY_NAME

    @property
    def description(self) -> str:
        return f"autostart entry {self.path}"

    def render(self, command: Sequence[str]) -> str:
        return desktop_entry(command, self.icon)

    def is_enabled(self) -> bool:
        """The entry exists and was not switched off (``Hidden=true`` or the GNOME
        ``X-GNOME-Autostart-enabled=false`` that desktop tools write)."""
        try:
            keys = _entry_keys(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            return False
        if keys.get("Hidden", "").lower() == "true":
            return False
        return keys.get("X-GNOME-Autostart-enabled", "true").lower() != "false"
