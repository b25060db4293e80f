"""Start at login on Windows: a ``HiveMind`` value under the current user's Run key
(``HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run``), holding the quoted command line.

Task Manager's "Startup apps" switch does not delete the value; it records the choice under
``...\\Explorer\\StartupApproved\\Run``, which :meth:`RunKeyAutostart.is_enabled` honours.
"""

from __future__ import annotations

import importlib
import logging
import subprocess
from collections.abc import Sequence
from typing import Any

from client_gui.platform.autostart import APP_NAME, AutostartError

logger = logging.getLogger(__name__)

RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
STARTUP_APPROVED_KEY = r"Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run"


def run_key_command(command: Sequence[str]) -> str:
    """The command line stored in the Run value: each argument quoted as the Windows C runtime parses
    it (``subprocess.list2cmdline``), so a path with spaces stays one argument."""
    if not command:
        raise AutostartError("Start at login needs the command that opens HiveMind.")
    return subprocess.list2cmdline(list(command))


def startup_approved(data: bytes | None) -> bool:
    """Whether a ``StartupApproved\\Run`` value lets the entry run: absent, or an even first byte
    (``02``/``06``: enabled; ``03``/``07``: switched off in Task Manager)."""
    return not data or data[0] % 2 == 0


def _winreg() -> Any:
    return importlib.import_module("winreg")  # Windows only; Any keeps mypy quiet on other OSes


class RunKeyAutostart:
    """HiveMind's value in the current user's Run key."""

    def __init__(self, value_name: str = APP_NAME) -> None:
        self.value_name = value_name
        self.description = f"registry value HKCU\\{RUN_KEY}\\{value_name}"

    def enable(self, command: Sequence[str]) -> None:
        line = run_key_command(command)
        winreg = _winreg()
        try:
            with winreg.CreateKeyEx(
                winreg.HKEY_CURRENT_USER, RUN_KEY, 0, winreg.KEY_SET_VALUE
            ) as key:
                winreg.SetValueEx(key, self.value_name, 0, winreg.REG_SZ, line)
        except OSError as exc:
            logger.error("Cannot write the Run value: %r", exc)
            raise AutostartError(
                "Windows refused to add HiveMind to the apps started at sign-in. "
                "Add it in Settings > Apps > Startup instead."
            ) from exc

    def disable(self) -> None:
        winreg = _winreg()
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:
                winreg.DeleteValue(key, self.value_name)
        except FileNotFoundError:
            return
        except OSError as exc:
            logger.error("Cannot delete the Run value: %r", exc)
            raise AutostartError(
                "Windows refused to remove HiveMind from the apps started at sign-in. "
                "Turn it off in Settings > Apps > Startup instead."
            ) from exc

    def is_enabled(self) -> bool:
        winreg = _winreg()
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
                winreg.QueryValueEx(key, self.value_name)
        except OSError:
            return False
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, STARTUP_APPROVED_KEY) as key:
                data, _ = winreg.QueryValueEx(key, self.value_name)
        except OSError:
            return True
        return startup_approved(data if isinstance(data, bytes) else None)
