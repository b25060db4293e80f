"""How fast is this machine right now? The issues' reference figures, measured again.

    python bench/calibrate.py
    python bench/calibrate.py --db postgresql+psycopg://hivemind:hivemind@127.0.0.1/hivemind_bench

The issues state their targets for "this 2-core machine" and give reference figures measured on it: a
trivial Python gRPC echo with 1 and 8 clients, and one bare transfer transaction straight on SQLite and on
PostgreSQL. The VM's speed drifts by the hour (by up to a third), so a benchmark figure means little
without the speed of the hour it ran in. This script measures the same things and prints each next to the
issue's figure, as a ratio. Run it next to (interleaved with) ``ledger_bench.py`` and ``dispatch_bench.py``.

- gRPC echo: a grpc.aio server in its own process (its own interpreter and GIL, as the coordinator has)
  answers a unary call with its request (32 bytes, no protobuf); this process calls it from 1 and from 8
  concurrent callers on one channel.
- Bare transfer: ``ledger_bench.bare_sql_rate``, the shape of one transfer (lock two balances, insert a
  transaction and two entries, update both balances, commit) through the bare driver. SQLite runs in WAL
  mode with ``synchronous=NORMAL`` on one connection. PostgreSQL runs one connection on one pair of
  accounts (the hot account) and 8 connections on 8 pairs (spread).

Every part is bounded by its call or transaction count.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ledger_bench import bare_sql_rate, free_port

# The issues' reference figures (issue 2, "Reference figures measured on this same machine"; issue 3 quotes
# the same gRPC range).
REFERENCE = {
    "grpc_echo_1": 1_600.0,
    "grpc_echo_8": 2_800.0,
    "sqlite_bare": 26_000.0,
    "pg_bare_hot": 850.0,
    "pg_bare_spread_8": 2_200.0,
}
LABELS = {
    "grpc_echo_1": "a trivial Python gRPC echo, 1 client (calls/s)",
    "grpc_echo_8": "a trivial Python gRPC echo, 8 clients (calls/s)",
    "sqlite_bare": "one bare transfer transaction on SQLite (WAL) (tx/s)",
    "pg_bare_hot": "the same on PostgreSQL, one hot account (tx/s)",
    "pg_bare_spread_8": "the same on PostgreSQL, spread, 8 clients (tx/s)",
}
SERVICE = "calibrate.Echo"


async def _serve(port: int) -> None:
    async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
            ),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def _echo_rate(target: str, clients: int, calls: int) -> float:
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(f"/{SERVICE}/Echo")
        deadline = time.monotonic() + 30
        while True:  # the server process may still be starting
            try:
                await call(b"ready", timeout=1)
                break
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        for _ in range(200):  # warm the channel and both interpreters
            await call(b"x" * 32)
        share = calls // clients

        async def caller() -> None:
            for _ in range(share):
                await call(b"x" * 32)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(clients)))
        return share * clients / (time.perf_counter() - started)


def grpc_echo(calls: int) -> dict[str, float]:
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve-echo", str(port)])
    try:
        target = f"127.0.0.1:{port}"
        return {
            "grpc_echo_1": asyncio.run(_echo_rate(target, 1, calls)),
            "grpc_echo_8": asyncio.run(_echo_rate(target, 8, calls)),
        }
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def bare_transfers(db: str | None, transactions: int) -> dict[str, float]:
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="hivemind-calibrate-") as tmp:
        rates["sqlite_bare"] = bare_sql_rate("sqlite://", "NORMAL", Path(tmp), transactions)
    if db:
        rates["pg_bare_hot"] = bare_sql_rate(db, "FULL", Path("."), transactions // 4)
        rates["pg_bare_spread_8"] = bare_sql_rate(db, "FULL", Path("."), transactions // 4, 8)
    return rates


def report(rates: dict[str, float]) -> str:
    lines = [
        f"{'what':<55} {'reference':>10} {'now':>10} {'ratio':>6}",
        "-" * 84,
    ]
    for key, rate in rates.items():
        lines.append(
            f"{LABELS[key]:<55} {REFERENCE[key]:>10,.0f} {rate:>10,.0f} {rate / REFERENCE[key]:>6.2f}"
        )
    ratios = [rate / REFERENCE[key] for key, rate in rates.items()]
    lines.append("")
    lines.append(
        f"this machine now runs at {statistics.median(ratios):.2f} of the reference "
        f"(median of {len(ratios)} ratios; range {min(ratios):.2f}-{max(ratios):.2f})"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--db",
        help="a PostgreSQL URL for the PostgreSQL rows (its tables bare_acc, bare_tx and bare_entry are "
        "dropped and created); without it those rows are left out",
    )
    parser.add_argument("--calls", type=int, default=8000, help="echo calls per client count")
    parser.add_argument(
        "--transactions",
        type=int,
        default=20000,
        help="bare SQLite transactions (PostgreSQL runs a quarter as many per row)",
    )
    parser.add_argument("--serve-echo", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_echo:
        asyncio.run(_serve(args.serve_echo))
        return 0
    if args.db and not args.db.startswith("postgresql"):
        parser.error("--db takes a PostgreSQL URL (SQLite is always measured, in a temp dir)")
    rates = grpc_echo(args.calls)
    rates.update(bare_transfers(args.db, args.transactions))
    print(report(rates))
    return 0


if __name__ == "__main__":
    sys.exit(main())
