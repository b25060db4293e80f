"""Start at login on macOS: a per-user LaunchAgent, ``~/Library/LaunchAgents/org.hivemind.app.plist``,
which launchd loads at the next login (``RunAtLoad``)."""

from __future__ import annotations

import plistlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from client_gui.platform.autostart import AutostartError, FileAutostart

LABEL = "org.hivemind.app"


def launch_agent(command: Sequence[str], label: str = LABEL) -> dict[str, Any]:
    """The LaunchAgent's keys: run ``command`` once at login, in the person's GUI session."""
    if not command:
        raise AutostartError("Start at login needs the command that opens HiveMind.")
    return {
        "Label": label,
        "ProgramArguments": list(command),
        "RunAtLoad": True,
        "ProcessType": "Interactive",
        "LimitLoadToSessionType": "Aqua",
    }


def launch_agent_plist(command: Sequence[str], label: str = LABEL) -> str:
    """The LaunchAgent as an XML property list."""
    return plistlib.dumps(launch_agent(command, label), fmt=plistlib.FMT_XML).decode("utf-8")


class LaunchAgentAutostart(FileAutostart):
    """HiveMind's LaunchAgent in ``agents_dir`` (``~/Library/LaunchAgents`` by default)."""

    login_items = "your login items"
    add_instead = "Add it in System Settings > General > Login Items instead."

    def __init__(self, agents_dir: Path | None = None, label: str = LABEL) -> None:
        self.agents_dir = agents_dir
        self.label = label

    @property
    def path(self) -> Path:
        folder = self.agents_dir or Path.home() / "Library" / "LaunchAgents"
        return folder / f"{self.label}.plist"

    @property
    def description(self) -> str:
        return f"LaunchAgent {self.path}"

    def render(self, command: Sequence[str]) -> str:
        return launch_agent_plist(command, self.label)

    def is_enabled(self) -> bool:
        try:
            agent = plistlib.loads(self.path.read_bytes())
        except (OSError, plistlib.InvalidFileException, ValueError):
            return False
        return isinstance(agent, dict) and not agent.get("Disabled", False)
