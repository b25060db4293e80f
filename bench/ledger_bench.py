"""Ledger throughput over gRPC: transfers/s and p50/p99 latency for one and several concurrent clients,
from one hot account and spread over many accounts, on SQLite or PostgreSQL.

The coordinator runs as a subprocess (``python -m coordinator coordinator``) so that it has its own
interpreter and GIL, as in production; this process is only the load generator. Users, wallets and
grants are written straight into the database before the run (registering 1,000 users through argon2
would take minutes and measure the wrong thing), and access tokens are signed with the same secret.

    .venv/bin/python bench/ledger_bench.py                       # SQLite file in a temp dir
    .venv/bin/python bench/ledger_bench.py --db postgresql+psycopg://hivemind:hivemind@127.0.0.1/hivemind_bench

Before the timed cases every account's token is used once (GetBalance), as on a coordinator that has been
serving these users (``--no-warmup`` skips it: then the first call per token also pays for its signature
check). On PostgreSQL the run uses a fresh schema, dropped at the end. Every case is bounded by --transfers and
--max-seconds. The audit runs at the end and its result is printed (exit status 1 if it is not clean).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url
from sqlmodel import col

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coordinator.accounts.models import User  # noqa: E402
from coordinator.accounts.tokens import TokenIssuer  # noqa: E402
from coordinator.clock import utcnow  # noqa: E402
from coordinator.db import Database  # noqa: E402
from coordinator.ledger import service as ledger  # noqa: E402
from shared_proto.v1 import tokens_pb2, tokens_pb2_grpc  # noqa: E402
from tests.support import fresh_schema  # noqa: E402

CPT = 1_000_000


@dataclass
class CaseResult:
    name: str
    clients: int
    ok: int
    refused: int
    failed: int
    seconds: float
    latencies_ms: list[float]
    server_cpu_s: float = float("nan")
    client_cpu_s: float = float("nan")

    def cpu_us_per_transfer(self, seconds: float) -> float:
        done = self.ok + self.refused
        return seconds / done * 1e6 if done else float("nan")

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all threads), from /proc; NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bare_sql_rate(
    url: str, synchronous: str, scratch: Path, n: int = 3000, connections: int = 1
) -> float:
    """Transactions/s of the same shape as a transfer (lock two balances, insert a transaction and two
    entries, update two balances, commit) through the bare driver on the same database: the ceiling
    that the ledger, SQLAlchemy and gRPC are measured against. With several ``connections``, each runs
    its share of the ``n`` transactions in its own thread between its own two accounts (spread)."""
    pairs = range(connections)
    accounts = ", ".join(f"({2 * i + 1}, 1000000000000), ({2 * i + 2}, 0)" for i in pairs)
    ddl = [
        "CREATE TABLE bare_acc (id INTEGER PRIMARY KEY, bal BIGINT NOT NULL)",
        "CREATE TABLE bare_tx (id INTEGER PRIMARY KEY, memo TEXT NOT NULL)",
        "CREATE TABLE bare_entry (id INTEGER PRIMARY KEY, tx INTEGER NOT NULL, acc INTEGER NOT NULL, "
        "amt BIGINT NOT NULL, after BIGINT NOT NULL)",
        f"INSERT INTO bare_acc VALUES {accounts}",
    ]
    parsed = make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    lock, mark = ("", "?") if sqlite else (" FOR NO KEY UPDATE", "%s")

    def connect() -> Any:
        if sqlite:
            import sqlite3

            conn = sqlite3.connect(
                scratch / "bare.db", isolation_level=None, timeout=60, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            return conn
        import psycopg

        return psycopg.connect(
            host=parsed.host, port=parsed.port, user=parsed.username, password=parsed.password,
            dbname=parsed.database, autocommit=True, options=parsed.query.get("options", ""),
        )  # fmt: skip

    def transfers(conn: Any, a: int, b: int, count: int) -> None:
        for _ in range(count):
            conn.execute("BEGIN IMMEDIATE" if sqlite else "BEGIN")
            (_, bal_a), (_, bal_b) = conn.execute(
                f"SELECT id, bal FROM bare_acc WHERE id IN ({a}, {b}) ORDER BY id{lock}"
            ).fetchall()
            tx = conn.execute(
                f"INSERT INTO bare_tx (memo) VALUES ({mark}) RETURNING id", ("",)
            ).fetchone()[0]
            conn.execute(
                f"INSERT INTO bare_entry (tx, acc, amt, after) VALUES ({mark}, {a}, -1, {mark}), ({mark}, {b}, 1, {mark})",
                (tx, bal_a - 1, tx, bal_b + 1),
            )
            conn.execute(
                f"UPDATE bare_acc SET bal = CASE id WHEN {a} THEN {mark} ELSE {mark} END WHERE id IN ({a}, {b})",
                (bal_a - 1, bal_b + 1),
            )
            conn.execute("COMMIT")

    drop = "DROP TABLE IF EXISTS bare_entry, bare_tx, bare_acc"
    conns: list[Any] = []
    try:
        conns += [connect() for _ in pairs]
        for stmt in ddl if sqlite else [drop, *ddl]:
            conns[0].execute(
                stmt if sqlite else stmt.replace("INTEGER PRIMARY KEY", "SERIAL PRIMARY KEY")
            )
        share = n // connections
        started = time.perf_counter()
        if connections == 1:
            transfers(conns[0], 1, 2, share)
        else:
            with ThreadPoolExecutor(connections) as pool:
                list(pool.map(lambda i: transfers(conns[i], 2 * i + 1, 2 * i + 2, share), pairs))
        return share * connections / (time.perf_counter() - started)
    finally:
        for (
            conn
        ) in conns:  # first, so that no open transaction holds a lock the drop would wait for
            conn.close()
        if not sqlite:
            with contextlib.suppress(Exception), connect() as conn:
                conn.execute(drop)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(db: Database, accounts: int, hot_micro: int, each_micro: int) -> list[tuple[int, str]]:
    """``accounts`` users with wallets; user 0 (the hot account) gets ``hot_micro``, the others ``each_micro``."""
    now = utcnow()
    prefix = uuid.uuid4().hex[:6]
    names = [f"b{prefix}{i}" for i in range(accounts)]
    with db.write() as session:
        session.execute(
            insert(User),
            [
                {
                    "username": n,
                    "email": f"{n}@bench.invalid",
                    "password_hash": "!",
                    "role": "user",
                    "disabled": False,
                    "created_at": now,
                }
                for n in names
            ],
        )
        rows = session.execute(
            select(User.id, User.username).where(col(User.username).in_(names))
        ).all()
        by_name = {str(r.username): int(r.id) for r in rows}
        users = [(by_name[n], n) for n in names]
        for i, (user_id, _) in enumerate(users):
            ledger.open_user_wallet(session, user_id, now=now)
            ledger.grant(
                session, user_id, hot_micro if i == 0 else each_micro, now=now, memo="bench"
            )
    return users


async def run_case(
    target: str,
    name: str,
    clients: int,
    transfers: int,
    max_seconds: float,
    pick: Callable[[random.Random], tuple[int, int]],
    users: list[tuple[int, str]],
    tokens: dict[int, str],
    with_keys: bool,
) -> CaseResult:
    latencies: list[float] = []
    counts = {"ok": 0, "refused": 0, "failed": 0}
    per_client = transfers // clients
    deadline = time.perf_counter() + max_seconds

    async def client(index: int) -> None:
        rnd = random.Random(index)
        async with grpc.aio.insecure_channel(target) as channel:
            stub = tokens_pb2_grpc.TokenServiceStub(channel)
            for _ in range(per_client):
                if time.perf_counter() > deadline:
                    return
                src, dst = pick(rnd)
                request = tokens_pb2.TransferRequest(
                    recipient=users[dst][1],
                    amount_micro=1_000 + rnd.randrange(1_000),
                    idempotency_key=uuid.uuid4().hex if with_keys else "",
                )
                metadata = (("authorization", f"Bearer {tokens[users[src][0]]}"),)
                started = time.perf_counter()
                try:
                    await stub.Transfer(request, metadata=metadata, timeout=30)
                    counts["ok"] += 1
                except grpc.aio.AioRpcError as exc:
                    if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                        counts["refused"] += 1
                    else:
                        counts["failed"] += 1
                        if counts["failed"] <= 3:
                            print(f"  {name}: {exc.code().name}: {exc.details()}", file=sys.stderr)
                latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    seconds = time.perf_counter() - started
    return CaseResult(
        name, clients, counts["ok"], counts["refused"], counts["failed"], seconds, latencies
    )


async def warm_up(target: str, users: list[tuple[int, str]], tokens: dict[int, str]) -> None:
    """One GetBalance per account, 8 at a time, untimed: a coordinator that has been serving these users
    has verified their tokens already (the first call with a token pays for its signature check)."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = tokens_pb2_grpc.TokenServiceStub(channel)
        gate = asyncio.Semaphore(8)

        async def one(user_id: int) -> None:
            async with gate:
                await stub.GetBalance(
                    tokens_pb2.GetBalanceRequest(),
                    metadata=(("authorization", f"Bearer {tokens[user_id]}"),),
                    timeout=30,
                )

        await asyncio.gather(*(one(user_id) for user_id, _ in users))


def wait_ready(target: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    channel = grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        proc.kill()
        raise SystemExit(f"the coordinator did not start within {timeout_s:.0f} s") from None
    finally:
        channel.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", help="database URL (default: a SQLite file in a temp dir)")
    parser.add_argument(
        "--transfers", type=int, default=3000, help="transfers per case (default 3000)"
    )
    parser.add_argument(
        "--accounts", type=int, default=1000, help="accounts for the spread cases (default 1000)"
    )
    parser.add_argument(
        "--clients", default="1,8", help="comma-separated client counts (default 1,8)"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=60, help="time limit per case (default 60)"
    )
    parser.add_argument(
        "--cases", default="hot,spread", help="comma-separated cases to run (default hot,spread)"
    )
    parser.add_argument(
        "--no-warmup",
        action="store_true",
        help="skip the warm-up (one GetBalance per account before the timed cases)",
    )
    parser.add_argument("--sqlite-synchronous", choices=["NORMAL", "FULL"], default="FULL")
    parser.add_argument(
        "--db-threads", type=int, default=8, help="coordinator DB threads (default 8)"
    )
    parser.add_argument(
        "--no-keys", action="store_true", help="send transfers without idempotency keys"
    )
    parser.add_argument(
        "--event-loop",
        choices=["auto", "uvloop", "asyncio"],
        default="auto",
        help="the coordinator's event loop (default auto: uvloop where installed)",
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="hivemind-bench-"))
    cleanup = ExitStack()
    cleanup.callback(shutil.rmtree, tmp, ignore_errors=True)
    proc: subprocess.Popen[bytes] | None = None
    db: Database | None = None
    try:
        url = cleanup.enter_context(
            fresh_schema(args.db or f"sqlite:///{tmp / 'bench.db'}", prefix="bench_")
        )
        postgres = make_url(url).get_backend_name() == "postgresql"

        secret = secrets.token_urlsafe(48)
        grpc_port, http_port = free_port(), free_port()
        env = os.environ | {
            "HIVEMIND_JWT_SECRET": secret,
            "HIVEMIND_SQLITE_SYNCHRONOUS": args.sqlite_synchronous,
            "HIVEMIND_DB_THREADS": str(args.db_threads),
            "HIVEMIND_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        }
        cmd = [
            sys.executable, "-m", "coordinator", "coordinator", "--db", url, "--data-dir", str(tmp),
            "--grpc-port", str(grpc_port), "--http-port", str(http_port), "--log-format", "text",
            "--event-loop", args.event_loop,
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
        target = f"127.0.0.1:{grpc_port}"
        db = Database(url)
        wait_ready(target, proc)
        users = seed(db, args.accounts, hot_micro=10**9 * CPT, each_micro=10_000 * CPT)
        issuer = TokenIssuer(secret, 24 * 3600, utcnow)
        tokens = {user_id: issuer.issue(user_id, name, "user") for user_id, name in users}

        n = len(users)

        def hot(rnd: random.Random) -> tuple[int, int]:
            return 0, rnd.randrange(1, n)

        def spread(rnd: random.Random) -> tuple[int, int]:
            src = rnd.randrange(n)
            return src, (src + rnd.randrange(1, n)) % n

        if not args.no_warmup:
            asyncio.run(warm_up(target, users, tokens))
        results: list[CaseResult] = []
        cases = [c.strip() for c in args.cases.split(",")]
        unknown = set(cases) - {"hot", "spread"}
        if unknown:
            raise SystemExit(f"unknown case(s) {sorted(unknown)}: choose from hot, spread")
        chosen = [
            (n, f) for n, f in (("hot account", hot), ("spread", spread)) if n.split()[0] in cases
        ]
        for case, pick in chosen:
            for clients in (int(c) for c in args.clients.split(",")):
                cpu_before, client_before = process_cpu_s(proc.pid), time.process_time()
                result = asyncio.run(
                    run_case(
                        target, case, clients, args.transfers, args.max_seconds, pick, users, tokens,
                        not args.no_keys,
                    )
                )  # fmt: skip
                result.server_cpu_s = process_cpu_s(proc.pid) - cpu_before
                result.client_cpu_s = time.process_time() - client_before
                results.append(result)
                print(f"  done: {case}, {clients} client(s): {result.rate:.0f}/s", file=sys.stderr)

        backend = "PostgreSQL" if postgres else f"SQLite (synchronous={args.sqlite_synchronous})"
        print(f"\nLedger transfers over gRPC on {backend}; {os.cpu_count()} CPUs; "
              f"{'with' if not args.no_keys else 'without'} idempotency keys; "
              f"event loop {args.event_loop}")  # fmt: skip
        header = f"{'case':<12} {'clients':>7} {'ok':>6} {'refused':>7} {'failed':>6} {'seconds':>8} {'tx/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'srv CPU us/tx':>13} {'load gen CPU us/tx':>18}"
        print(header)
        print("-" * len(header))
        for r in results:
            print(
                f"{r.name:<12} {r.clients:>7} {r.ok:>6} {r.refused:>7} {r.failed:>6} {r.seconds:>8.2f} "
                f"{r.rate:>8.0f} {r.pct(0.50):>7.2f} {r.pct(0.99):>7.2f} {r.cpu_us_per_transfer(r.server_cpu_s):>13.0f} {r.cpu_us_per_transfer(r.client_cpu_s):>18.0f}"
            )
        print(
            f"bare driver, same transaction shape, 1 connection: {bare_sql_rate(url, args.sqlite_synchronous, tmp):.0f} tx/s"
        )
        with db.read() as session:
            problems = ledger.audit(session)
            supply = ledger.total_supply_micro(session)
        print(f"\naudit: {'clean' if not problems else f'{len(problems)} discrepancies'}; "
              f"total supply {ledger.format_cpt(supply)}")  # fmt: skip
        for p in problems[:20]:
            print(f"  - {p}")
        return 0 if not problems and not any(r.failed for r in results) else 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if db is not None:
            db.dispose()
        cleanup.close()  # the PostgreSQL schema, then the temp dir


if __name__ == "__main__":
    sys.exit(main())
