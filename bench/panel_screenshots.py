"""Screenshots of the web panel for the docs: ``docs/screenshots/panel-<page>.png``.

    .venv/bin/python bench/panel_screenshots.py [--out docs/screenshots]

It starts a demo coordinator on a throwaway SQLite database with data made the way real clients make it
(an admin, a submitter, two volunteers whose workers run real Docker jobs, a transfer, a grant, a price
change, a quarantined node), then opens each page in Debian's headless chromium at laptop size (1366×768)
and the overview at phone size (390×844), and saves them. Needs /usr/bin/chromium and a Docker engine
with ``hivemind/busybox:latest``. Takes about a minute.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from playwright.sync_api import Page, sync_playwright  # noqa: E402

from client_gui.engine.local import local_worker  # noqa: E402
from client_gui.engine.worker import Worker, WorkerLimits  # noqa: E402
from coordinator.server import BackgroundCoordinator  # noqa: E402
from coordinator.settings import Settings  # noqa: E402

PASSWORD = "correct horse battery"
BUSYBOX = "hivemind/busybox:latest"
LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
CPT = 1_000_000


class Demo:
    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=30)
        self.tokens: dict[str, str] = {}

    def call(self, method: str, path: str, who: str, **kw: Any) -> Any:
        reply = self.http.request(
            method, path, headers={"Authorization": f"Bearer {self.tokens[who]}"}, **kw
        )
        if reply.status_code >= 400:
            raise SystemExit(f"{method} {path} as {who}: {reply.status_code} {reply.text}")
        return reply.json()

    def user(self, name: str) -> None:
        self.http.post(
            "/api/v1/auth/register",
            json={"username": name, "email": f"{name}@example.org", "password": PASSWORD},
        )
        self.login(name)

    def login(self, name: str) -> None:
        reply = self.http.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
        reply.raise_for_status()
        self.tokens[name] = reply.json()["access_token"]

    def submit(self, who: str, name: str, command: list[str], **spec: Any) -> str:
        spec.setdefault("resources", {"cpu_cores": 0.5, "memory_gb": 0.125})
        body = {"name": name, "image": BUSYBOX, "command": command, "timeout_s": 120, **spec}
        body.setdefault("max_budget_micro", 2 * CPT)
        return str(self.call("POST", "/api/v1/jobs", who, json=body)["job_id"])

    def wait(self, who: str, job_ids: list[str], timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            states = [self.call("GET", f"/api/v1/jobs/{j}", who)["state"] for j in job_ids]
            if all(s in ("completed", "failed", "cancelled") for s in states):
                return
            time.sleep(0.5)
        raise SystemExit(f"demo jobs did not finish within {timeout_s:.0f} s")


def start_worker(target: str, owner: str, home: Path) -> Worker:
    worker = local_worker(target, owner, PASSWORD, home / owner, limits=WorkerLimits(slots=2))
    worker.start()
    return worker


def make_demo_data(demo: Demo, coordinator: Any, target: str, home: Path) -> list[Worker]:
    coordinator.accounts.create_admin("ada", "ada@example.org", PASSWORD)
    demo.login("ada")
    for name in ("alice", "bob", "carol"):
        demo.user(name)
    demo.call(
        "POST",
        "/api/v1/admin/ledger/grant",
        "ada",
        json={"username": "alice", "amount_micro": 250 * CPT, "memo": "research allocation"},
    )
    demo.call(
        "POST",
        "/api/v1/wallet/transfer",
        "alice",
        json={"recipient": "bob", "amount_micro": 12_500_000, "memo": "thanks for the GPU time"},
    )
    workers = [start_worker(target, "bob", home), start_worker(target, "carol", home)]
    first = [
        demo.submit(
            "alice",
            "hello world",
            ["sh", "-c", "echo hello from HiveMind > out.txt; cat out.txt"],
            output_paths=["out.txt"],
            replicas=2,
        ),
        demo.submit(
            "alice",
            "render frames",
            ["sh", "-c", 'echo "frame $HIVEMIND_TASK_INDEX" > frame.txt'],
            output_paths=["frame.txt"],
            array_size=4,
        ),
        demo.submit("alice", "word count", ["sh", "-c", "seq 1 5000 | wc -l"]),
        demo.submit("alice", "flaky step", ["sh", "-c", "echo trying; exit 3"], max_attempts=1),
    ]
    demo.wait("alice", first)
    demo.call("PUT", "/api/v1/admin/pricing", "ada", json={"cpu_micro_per_core_second": 120})
    # Still going when the screenshots are taken: one running, one waiting for a GPU nobody has.
    demo.submit(
        "alice",
        "prime sieve",
        ["sh", "-c", "for i in $(seq 1 90); do echo checked block $i; sleep 1; done"],
    )
    demo.submit(
        "alice",
        "train model",
        ["sh", "-c", "echo needs a GPU"],
        resources={"cpu_cores": 1.0, "memory_gb": 0.5, "gpu_count": 1},
    )
    carol = demo.call("GET", "/api/v1/nodes", "carol")["nodes"][0]["id"]
    demo.call(
        "POST",
        f"/api/v1/admin/nodes/{carol}/quarantine",
        "ada",
        json={"reason": "results disagreed with the quorum twice this week"},
    )
    time.sleep(3)
    return workers


def sign_in(page: Page, base: str, who: str) -> None:
    page.goto(f"{base}/?poll=1000#/signin")
    page.get_by_label("Username").fill(who)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Overview", level=1).wait_for()


def shoot(
    page: Page, route: str, out: Path, name: str, ready: str | None = None, full: bool = False
) -> None:
    page.evaluate("r => { location.hash = r; }", f"#{route}")
    if ready:
        page.locator(ready).first.wait_for()
    page.wait_for_timeout(1500)  # let the first poll and the charts settle
    page.evaluate("document.activeElement && document.activeElement.blur()")
    path = out / f"panel-{name}.png"
    page.screenshot(path=str(path), full_page=full)
    print(f"  {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hivemind-panel-") as tmp_dir:
        tmp = Path(tmp_dir)
        settings = Settings(
            db=f"sqlite:///{tmp / 'c.db'}",
            data_dir=tmp / "data",
            grpc_port=0,
            http_port=0,
            jwt_secret="panel-screenshots-" + "x" * 40,
            heartbeat_interval_s=1,
            lease_ttl_s=10,
        )
        with BackgroundCoordinator(settings) as coordinator:
            base = f"http://127.0.0.1:{coordinator.http_port}"
            demo = Demo(base)
            print("Making demo data (real workers, real Docker jobs)…")
            workers = make_demo_data(demo, coordinator, f"127.0.0.1:{coordinator.grpc_port}", tmp)
            jobs = demo.call("GET", "/api/v1/jobs", "alice")["jobs"]
            hello = next(j["job_id"] for j in jobs if j["name"] == "hello world")
            carol = demo.call("GET", "/api/v1/nodes", "carol")["nodes"][0]["id"]
            try:
                print("Taking screenshots:")
                with sync_playwright() as p:
                    browser = p.chromium.launch(
                        executable_path="/usr/bin/chromium", args=["--no-sandbox"], headless=True
                    )
                    page = browser.new_page(viewport=LAPTOP)  # type: ignore[arg-type]
                    page.goto(f"{base}/#/signin")
                    page.get_by_label("Username").wait_for()
                    shoot(page, "/signin", args.out, "signin")
                    sign_in(page, base, "alice")
                    shoot(page, "/overview", args.out, "overview", ".chart")
                    shoot(page, "/jobs", args.out, "jobs", "table")
                    shoot(page, f"/jobs/{hello}", args.out, "job", ".log-line", full=True)
                    shoot(page, "/wallet", args.out, "wallet", "table")
                    page.get_by_role("button", name="Sign out").click()
                    sign_in(page, base, "ada")
                    shoot(page, "/admin/nodes", args.out, "nodes", "table")
                    shoot(page, f"/admin/nodes/{carol}", args.out, "node", "table", full=True)
                    shoot(page, f"/admin/jobs/{hello}", args.out, "admin-job", "table", full=True)
                    shoot(page, "/admin/users", args.out, "users", "table")
                    shoot(page, "/admin/ledger", args.out, "ledger", "table", full=True)
                    shoot(page, "/admin/pricing", args.out, "pricing", "dl")
                    shoot(page, "/admin/audit", args.out, "audit", "table")
                    phone = browser.new_page(viewport=PHONE)  # type: ignore[arg-type]
                    sign_in(phone, base, "alice")
                    shoot(phone, "/overview", args.out, "phone-overview", ".chart")
                    browser.close()
            finally:
                for worker in workers:
                    worker.stop(cancel_running=True, timeout=30)
                    worker.client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
