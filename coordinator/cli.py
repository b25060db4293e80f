"""The ``hivemind`` command: one console script with subcommands."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from client_gui.engine.cli import add_worker_parser, run_worker
from client_gui.engine.job_cli import add_job_parser, run_job
from client_gui.gui_cli import add_gui_parser, run_gui
from coordinator import __version__
from coordinator.errors import HiveMindError

if TYPE_CHECKING:
    from coordinator.settings import Settings

logger = logging.getLogger("hivemind")


def _add_coordinator_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "coordinator settings (each also reads HIVEMIND_<NAME> from the environment)"
    )
    g.add_argument(
        "--config", type=Path, help="TOML file with settings (keys as in HIVEMIND_*, lowercase)"
    )
    g.add_argument("--host", help="address to bind both servers to (default 127.0.0.1)")
    g.add_argument("--grpc-port", type=int, help="gRPC port (default 50051)")
    g.add_argument(
        "--http-port", type=int, help="HTTP port for REST, docs and the panel (default 5001)"
    )
    g.add_argument(
        "--db",
        help="database URL (default: SQLite file in --data-dir); e.g. postgresql+psycopg://...",
    )
    g.add_argument("--data-dir", type=Path, help="directory for the SQLite file and the dev secret")
    g.add_argument("--redis-url", help="Redis URL for liveness and wake-ups (default: in-process)")
    g.add_argument(
        "--production",
        action="store_const",
        const="production",
        dest="env",
        help="production mode: refuses to start without a strong HIVEMIND_JWT_SECRET",
    )
    g.add_argument(
        "--event-loop",
        choices=["auto", "uvloop", "asyncio"],
        help="event loop to serve on (default auto: uvloop where installed, else asyncio)",
    )
    g.add_argument("--log-format", choices=["json", "text"], help="log line format (default json)")
    g.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (default INFO)")


def _settings_from(args: argparse.Namespace) -> Settings:
    # Imported here: pydantic-settings costs ~0.2 s, which `hivemind gui` and `hivemind worker` skip.
    from coordinator.settings import load_settings

    return load_settings(
        config_file=args.config,
        host=args.host,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        db=args.db,
        data_dir=args.data_dir,
        redis_url=args.redis_url,
        env=args.env,
        log_format=args.log_format,
        log_level=args.log_level,
        event_loop=args.event_loop,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hivemind",
        description="HiveMind volunteer computing: run the coordinator, a worker, or manage jobs.",
    )
    parser.add_argument("--version", action="version", version=f"hivemind {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    coord = sub.add_parser(
        "coordinator",
        help="run the coordinator (gRPC + HTTP), or manage it",
        description="Serve gRPC (default port 50051) and HTTP (default port 5001) until SIGTERM/SIGINT.",
    )
    _add_coordinator_flags(coord)
    coord_sub = coord.add_subparsers(dest="coordinator_command", metavar="ACTION")
    admin = coord_sub.add_parser(
        "create-admin",
        help="create an admin account (password read from stdin)",
        description="Create an administrator, or promote an existing user after checking their password. "
        "The password is read from standard input (prompted when it is a terminal).",
    )
    _add_coordinator_flags(admin)
    admin.add_argument("--username", required=True)
    admin.add_argument("--email", help="email address (default: <username>@hivemind.example)")
    add_worker_parser(sub)
    add_job_parser(sub)
    add_gui_parser(sub)
    demo = sub.add_parser(
        "demo",
        help="run the whole platform on this computer: coordinator, two workers, real jobs, payments",
        description="Starts a coordinator on a temporary SQLite database and two local workers (jobs run in "
        "Docker), builds the small job image if it is missing, creates two accounts with a grant, submits a "
        "job with two replicas and a two-step DAG, shows progress, prints the results and both wallets, "
        "checks the ledger audit, stops everything and exits 0 when every step behaved.",
    )
    demo.add_argument(
        "--data-dir", type=Path, help="keep the demo database here instead of a temp dir"
    )
    return parser


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password for the new admin: ")
        if getpass.getpass("Repeat it: ") != first:
            raise SystemExit("The two passwords differ; nothing was created.")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _create_admin(settings: Settings, username: str, email: str | None) -> int:
    from coordinator.server import Coordinator

    coordinator = Coordinator(settings)
    try:
        coordinator.db.migrate()
        user = coordinator.accounts.create_admin(
            username, email or f"{username}@hivemind.example", _read_password()
        )
    except HiveMindError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        coordinator.executor.shutdown()
        coordinator.db.dispose()
    print(f"Admin '{user.username}' is ready (user id {user.id}).")
    return 0


def _run_coordinator(settings: Settings) -> int:
    from coordinator.eventloop import EventLoopUnavailable, loop_factory
    from coordinator.server import Coordinator

    try:
        _, new_loop = loop_factory(settings.event_loop)
        with asyncio.Runner(loop_factory=new_loop) as runner:
            runner.run(Coordinator(settings).run_until_signalled())
    except EventLoopUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        logger.error("coordinator could not start", extra={"error": str(exc)})
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "coordinator":
        from pydantic import ValidationError

        from coordinator.settings import SettingsError

        try:
            settings = _settings_from(args)
        except (SettingsError, ValidationError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        from coordinator.logging_setup import configure_logging

        configure_logging(settings.log_level, settings.log_format)
        if args.coordinator_command == "create-admin":
            return _create_admin(settings, args.username, args.email)
        return _run_coordinator(settings)
    if args.command == "worker":
        return run_worker(args)
    if args.command == "job":
        return run_job(args)
    if args.command == "gui":
        return run_gui(args)
    if args.command == "demo":
        from coordinator.demo import main as demo_main

        return demo_main(args.data_dir)
    parser.error(f"unknown command {args.command}")
    return 2
