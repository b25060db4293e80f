"""``hivemind gui``: the desktop app's subcommand. Parsing imports no Qt, so the other subcommands (and
``--help``) work on a machine without Qt's libraries; Qt is imported only when the app starts."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_gui_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gui = sub.add_parser(
        "gui",
        help="open the desktop app (system tray, earnings, jobs, settings)",
        description="Open HiveMind's desktop app: sign in, lend this computer when it is idle, watch "
        "earnings, submit jobs. Settings are kept in the user's config folder.",
    )
    gui.add_argument("--coordinator", help="coordinator address host:port (default: the saved one)")
    gui.add_argument(
        "--config-dir",
        type=Path,
        help="keep settings and the worker's state here instead of the user's config folder",
    )


def run_gui(args: argparse.Namespace) -> int:
    from client_gui.ui.app import main

    return main(coordinator=args.coordinator, config_dir=args.config_dir)
