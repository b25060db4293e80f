"""The ledger as an admin sees it (system accounts and totals, anyone's statement, grants) and the price
table: a change is persisted, logged, and applies to jobs submitted after it - a job submitted before is
charged at the old prices even when it runs after the change."""

from __future__ import annotations

from pathlib import Path

from tests.admin.conftest import Admin
from tests.admin.helpers import audit_count, audit_entries, funded, run_until_final, submit
from tests.jobs.helpers import CPT, balance
from tests.support import RunningCoordinator, bearer


def test_grant_accounts_statement_and_grants(admin: Admin) -> None:
    c = admin.c
    h = bearer(admin.admin_token)
    funded(c, "carol", 3 * CPT)  # minted without an admin (as a script would)
    r = c.http.post(
        "/api/v1/admin/ledger/grant",
        json={
            "username": "bob",
            "amount_micro": 5 * CPT,
            "memo": "welcome",
            "idempotency_key": "k1",
        },
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert r.json()["new_balance_micro"] == 5 * CPT and r.json()["replayed"] is False
    replay = c.http.post(
        "/api/v1/admin/ledger/grant",
        json={
            "username": "bob",
            "amount_micro": 5 * CPT,
            "memo": "welcome",
            "idempotency_key": "k1",
        },
        headers=h,
    )
    assert replay.json()["replayed"] is True
    assert balance(c, admin.bob_id) == 5 * CPT

    accounts = c.http.get("/api/v1/admin/ledger/accounts", headers=h).json()
    assert [(a["name"], a["balance_micro"]) for a in accounts["accounts"]] == [
        ("system:mint", -8 * CPT),
        ("system:fees", 0),
    ]
    assert accounts["total_minted_micro"] == 8 * CPT == accounts["wallets_micro"]
    assert accounts["escrow_micro"] == 0 and accounts["fees_micro"] == 0

    statement = c.http.get("/api/v1/admin/ledger/statement/bob", headers=h).json()
    assert statement["username"] == "bob" and statement["balance_micro"] == 5 * CPT
    (line,) = statement["transactions"]
    assert (line["kind"], line["amount_micro"], line["counterparty"], line["memo"]) == (
        "grant",
        5 * CPT,
        "system:mint",
        "welcome",
    )
    missing = c.http.get("/api/v1/admin/ledger/statement/nobody", headers=h)
    assert missing.status_code == 404

    grants = c.http.get("/api/v1/admin/ledger/grants", headers=h).json()
    assert grants["total"] == 2
    assert [(g["username"], g["amount_micro"], g["initiator"]) for g in grants["grants"]] == [
        ("bob", 5 * CPT, "ada"),
        ("carol", 3 * CPT, None),
    ]
    # the replay moved nothing and is not in the audit log twice
    (entry,) = audit_entries(c, admin.admin_token, action="ledger.grant")
    assert entry["target"] == "user:bob" and entry["detail"]["amount_micro"] == 5 * CPT

    for body in ({"username": "bob", "amount_micro": 0}, {"username": "nobody", "amount_micro": 5}):
        refused = c.http.post("/api/v1/admin/ledger/grant", json=body, headers=h)
        assert refused.status_code in (400, 404), refused.text
    assert audit_count(c) == 1


def test_a_price_change_applies_only_to_jobs_submitted_after_it(admin: Admin) -> None:
    c = admin.c
    h = bearer(admin.admin_token)
    _, carol = funded(c, "carol")
    before = submit(c, carol, name="before")

    r = c.http.put(
        "/api/v1/admin/pricing",
        json={"min_task_charge_micro": 5000, "platform_fee_bps": 2000},
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert r.json()["min_task_charge_micro"] == 5000 and r.json()["source"] == "admin"
    assert r.json()["updated_by"] == "ada" and r.json()["cpu_micro_per_core_second"] == 100
    after = submit(c, carol, name="after")
    run_until_final(c, [before, after])  # the old job runs after the change

    def paid(job_id: str) -> list[tuple[int, int]]:
        detail = c.http.get(f"/api/v1/admin/jobs/{job_id}", headers=h).json()
        return [(x["charged_micro"], x["paid_micro"]) for t in detail["tasks"] for x in t["leases"]]

    assert paid(before) == [(1000, 900), (1000, 900)]  # the old minimum and the old 10 % fee
    assert paid(after) == [(5000, 4000), (5000, 4000)]  # the new minimum and the new 20 % fee
    fees = c.http.get("/api/v1/admin/ledger/accounts", headers=h).json()["fees_micro"]
    assert fees == 2 * 100 + 2 * 1000
    (entry,) = audit_entries(c, admin.admin_token, target="pricing")
    assert entry["detail"]["changed"] == {
        "min_task_charge_micro": {"from": 1000, "to": 5000},
        "platform_fee_bps": {"from": 1000, "to": 2000},
    }


def test_bad_prices_are_refused_and_nothing_changes(sqlite_admin: Admin) -> None:
    c = sqlite_admin.c
    h = bearer(sqlite_admin.admin_token)
    cases = [
        ({}, 400, "Give at least one of"),
        (
            {"platform_fee_bps": 10_001},
            400,
            "platform_fee_bps must be a whole number from 0 to 10,000",
        ),
        ({"cpu_micro_per_core_second": -1}, 400, "from 0 to"),
        ({"cpu_micro_per_core_second": 1.5}, 422, "cpu_micro_per_core_second"),
        ({"fee": 5}, 422, "fee"),
        # the prices it has already: not a change, so no history row and no audit entry
        ({"platform_fee_bps": 1000}, 409, "These are the current prices already"),
    ]
    for body, status, words in cases:
        r = c.http.put("/api/v1/admin/pricing", json=body, headers=h)
        assert r.status_code == status, (body, r.text)
        assert words in r.json()["error"]["message"], (body, r.text)
    current = c.http.get("/api/v1/admin/pricing", headers=h).json()
    assert current["source"] == "settings" and current["platform_fee_bps"] == 1000
    assert audit_count(c) == 0


def test_the_price_table_outlives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    with RunningCoordinator.start(db_url=url, data_dir=tmp_path) as c:
        token = c.make_admin("ada")
        r = c.http.put(
            "/api/v1/admin/pricing", json={"gpu_micro_per_gpu_second": 3000}, headers=bearer(token)
        )
        assert r.status_code == 200
    with RunningCoordinator.start(db_url=url, data_dir=tmp_path) as c:
        token = c.login("ada").token
        current = c.http.get("/api/v1/admin/pricing", headers=bearer(token)).json()
        assert current["gpu_micro_per_gpu_second"] == 3000 and current["updated_by"] == "ada"
        assert c.coordinator.dispatcher.prices().gpu_micro_per_gpu_second == 3000
