"""The web panel in a real browser (Debian's chromium via Playwright) against a real coordinator on
loopback, with a real worker running real Docker jobs. Each test does what a person would do in the page
and checks what they would see, then checks the platform agrees through the API."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from coordinator.ledger.models import MICRO_PER_CPT
from tests.e2e.cluster import BUSYBOX, Cluster
from tests.lossy_proxy import LossyProxy
from tests.support import PASSWORD, bearer
from tests.web.conftest import PHONE, go, new_page, open_panel, sign_in

pytestmark = pytest.mark.browser


# -- helpers -----------------------------------------------------------------------------------------------
def ensure_worker(c: Cluster, owner: str = "bob") -> str:
    """A real worker (real Docker) owned by ``owner``; returns its node id once it has registered."""
    if owner not in c.workers:
        c.add_worker(owner, slots=2)
    token = c.tokens[owner]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        nodes = c.running.http.get("/api/v1/nodes", headers=bearer(token)).json()["nodes"]
        if nodes and nodes[0]["online"]:
            return str(nodes[0]["id"])
        time.sleep(0.2)
    raise AssertionError(f"{owner}'s worker did not register within 60 s")


def ensure_user(c: Cluster, name: str, grant_cpt: int = 0) -> str:
    if name not in c.tokens:
        c.user(name, grant_cpt=grant_cpt)
    return c.tokens[name]


def ensure_admin(c: Cluster, name: str = "ada") -> str:
    if name not in c.tokens:
        c.tokens[name] = c.running.make_admin(name)
    return c.tokens[name]


def signed_in(c: Cluster, page: Page, name: str) -> None:
    """``name`` (a user with 100 CPT) signed in through the form, on the overview."""
    ensure_user(c, name, grant_cpt=100)
    sign_in(page, c.running.http_base, name)


def submit(c: Cluster, owner: str, **spec: Any) -> str:
    spec.setdefault("image", BUSYBOX)
    spec.setdefault("max_budget_micro", MICRO_PER_CPT)
    spec.setdefault("timeout_s", 60)
    spec.setdefault("resources", {"cpu_cores": 0.5, "memory_gb": 0.125})
    reply = c.running.http.post("/api/v1/jobs", json=spec, headers=bearer(c.tokens[owner]))
    assert reply.status_code == 201, reply.text
    return str(reply.json()["job_id"])


def tile(page: Page, key: str) -> int:
    return int(page.locator(f"#tile-{key}").inner_text())


def wait_for_tile(page: Page, key: str, predicate: Any, what: str) -> int:
    """Wait until the overview's tile satisfies predicate (the panel polls; nothing here reloads it)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = page.locator(f"#tile-{key}").inner_text()
        if text.isdigit() and predicate(int(text)):
            return int(text)
        page.wait_for_timeout(100)
    raise AssertionError(f"the overview never showed {what}; {key} shows {text!r}")


# -- signing in --------------------------------------------------------------------------------------------
def test_sign_in_shows_the_api_sentence_then_signs_in_and_out(
    panel_cluster: Cluster, page: Page
) -> None:
    c = panel_cluster
    ensure_user(c, "alice", grant_cpt=100)
    base = c.running.http_base

    open_panel(page, base)
    expect(page.get_by_role("heading", name="Sign in to HiveMind")).to_be_visible()
    expect(page.get_by_role("link", name="Create an account")).to_be_visible()
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    # The API's own sentence, as an alert; still on the sign-in page.
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("username or password")
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    expect(page.locator("#account-name")).to_contain_text("alice")
    assert page.evaluate("sessionStorage.getItem('hivemind.session')") is not None
    # A user sees no admin pages.
    expect(page.get_by_role("link", name="Users")).to_have_count(0)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to HiveMind")).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="signed out")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('hivemind.session')") is None
    # Signed out means signed out: a page behind sign-in sends us back.
    go(page, "/wallet")
    expect(page.get_by_role("heading", name="Sign in to HiveMind")).to_be_visible()


def test_create_an_account_from_the_sign_in_page(panel_cluster: Cluster, page: Page) -> None:
    base = panel_cluster.running.http_base
    open_panel(page, base, "/signin")
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Username").fill("dora")
    page.get_by_label("Email").fill("dora@example.org")
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("alert")).to_contain_text("10 characters")

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Sign in to HiveMind")).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="Welcome, dora")).to_be_visible()
    expect(page.get_by_label("Username")).to_have_value("dora")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#account-name")).to_contain_text("dora")


def test_an_expired_access_token_is_refreshed_without_signing_out(
    panel_cluster: Cluster, page: Page
) -> None:
    c = panel_cluster
    signed_in(c, page, "alice")
    # Spoil the access token as if it had expired: the next call gets 401 and must refresh, once.
    page.evaluate(
        """() => { const s = JSON.parse(sessionStorage.getItem('hivemind.session'));
                   s.access_token = 'expired'; sessionStorage.setItem('hivemind.session', JSON.stringify(s)); }"""
    )
    go(page, "/wallet")
    expect(page.locator("#wallet-balance")).to_contain_text("CPT")
    stored = page.evaluate("JSON.parse(sessionStorage.getItem('hivemind.session'))")
    assert stored["access_token"] != "expired"
    me = c.running.http.get("/api/v1/auth/me", headers=bearer(stored["access_token"]))
    assert me.json()["username"] == "alice"


# -- a job from submission to its downloaded result --------------------------------------------------------
def test_a_job_submitted_through_the_api_appears_on_the_overview_completes_and_downloads(
    panel_cluster: Cluster, page: Page
) -> None:
    c = panel_cluster
    signed_in(c, page, "alice")
    queued_before = wait_for_tile(page, "jobs_queued", lambda n: True, "a queue length")
    done_before = tile(page, "jobs_done")

    # With no worker yet the job waits in the queue; an earlier test may have started the workers.
    # Two workers of different owners: a new node's result is cross-checked on another node.
    had_worker = "bob" in c.workers
    job_id = submit(
        c,
        "alice",
        name="panel hello",
        command=["sh", "-c", "echo started; sleep 3; echo hello panel > out.txt; echo finished"],
        output_paths=["out.txt"],
    )
    if not had_worker:
        wait_for_tile(page, "jobs_queued", lambda n: n == queued_before + 1, "the job queued")
    ensure_worker(c, "bob")
    ensure_worker(c, "carol")
    wait_for_tile(page, "jobs_running", lambda n: n >= 1, "the job running")
    wait_for_tile(page, "jobs_done", lambda n: n == done_before + 1, "the job done")
    wait_for_tile(page, "jobs_running", lambda n: n == 0, "nothing running any more")

    # The job's page: completed, its log, its result.
    page.get_by_role("link", name="My jobs").click()
    page.get_by_role("link", name="panel hello").click()
    expect(page.get_by_role("heading", name="Job panel hello", level=1)).to_be_visible()
    expect(page.locator(".facts").first).to_contain_text("completed")
    log = page.get_by_role("log")
    expect(log).to_contain_text("started")
    expect(log).to_contain_text("finished")
    expect(page.get_by_text("has ended (accepted)")).to_be_visible()

    with page.expect_download() as info:
        page.get_by_role("button", name=re.compile(r"^Download out\.txt of task 0")).click()
    download = info.value
    assert download.suggested_filename == "out.txt"
    assert Path(download.path()).read_bytes() == b"hello panel\n"
    with page.expect_download() as info:
        page.get_by_role("button", name=re.compile(r"^Download stdout of task 0")).click()
    assert Path(info.value.path()).read_bytes() == b"started\nfinished\n"

    # What the page showed is what the API says.
    job = c.running.http.get(f"/api/v1/jobs/{job_id}", headers=bearer(c.tokens["alice"])).json()
    assert job["state"] == "completed"


# -- admin: quarantine a node --------------------------------------------------------------------------------
def test_an_admin_quarantines_a_node_and_sees_its_state_change(
    panel_cluster: Cluster, page: Page
) -> None:
    c = panel_cluster
    ensure_user(c, "bob")
    node_id = ensure_worker(c, "bob")
    ensure_admin(c, "ada")
    sign_in(page, c.running.http_base, "ada")

    page.get_by_role("link", name="All nodes").click()
    expect(page.get_by_role("heading", name="All nodes", level=1)).to_be_visible()
    page.locator(f'a[href="#/admin/nodes/{node_id}"]').click()
    state = page.locator("#node-state")
    expect(state).to_have_attribute("data-state", re.compile("idle|busy|registered"))

    page.get_by_role("button", name="Quarantine").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Reason").fill("results looked wrong")
    dialog.get_by_role("button", name="Quarantine").click()
    expect(state).to_have_attribute("data-state", "quarantined")
    expect(state).to_contain_text("results looked wrong")
    expect(page.get_by_role("status").filter(has_text="is quarantined")).to_be_visible()

    node = c.running.http.get(
        f"/api/v1/admin/nodes/{node_id}", headers=bearer(c.tokens["ada"])
    ).json()
    assert node["quarantined"] is True and "results looked wrong" in node["quarantine_reason"]
    # The action is on the node's history and in the audit log.
    expect(page.get_by_role("table", name="Admin actions on this node")).to_contain_text(
        "node.quarantine"
    )

    page.get_by_role("button", name="Release").click()
    page.get_by_role("dialog").get_by_role("button", name="Release").click()
    expect(state).not_to_have_attribute("data-state", "quarantined")
    node = c.running.http.get(
        f"/api/v1/admin/nodes/{node_id}", headers=bearer(c.tokens["ada"])
    ).json()
    assert node["quarantined"] is False

    page.get_by_role("link", name="Audit log").click()
    audit = page.get_by_role("table", name="Admin actions, newest first")
    expect(audit).to_contain_text("node.release")
    expect(audit).to_contain_text("node.quarantine")


def test_an_admin_cancels_and_requeues_a_job_from_its_page(
    panel_cluster: Cluster, page: Page
) -> None:
    c = panel_cluster
    ensure_user(c, "alice", grant_cpt=100)
    ensure_admin(c, "ada")
    # Needs a GPU no worker here has, so it waits in the queue until the admin acts.
    job_id = submit(
        c,
        "alice",
        name="needs a gpu",
        command=["true"],
        resources={"cpu_cores": 0.5, "memory_gb": 0.125, "gpu_count": 1},
    )
    sign_in(page, c.running.http_base, "ada")
    go(page, "/admin/jobs")
    page.get_by_label("Owner").fill("alice")
    page.get_by_role("button", name="Apply filters").click()
    page.get_by_role("link", name="needs a gpu").click()
    expect(page.get_by_role("heading", name="Job needs a gpu")).to_be_visible()
    expect(page.get_by_role("table", name="Verification per task")).to_contain_text("pending")

    page.get_by_role("button", name="Cancel job").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel job").click()
    expect(page.get_by_role("status").filter(has_text="Refunded")).to_be_visible()
    expect(page.locator(".facts").first).to_contain_text("cancelled")

    page.get_by_role("button", name="Requeue").click()
    page.get_by_role("dialog").get_by_role("button", name="Requeue").click()
    expect(page.locator(".facts").first).to_contain_text("queued")
    job = c.running.http.get(f"/api/v1/jobs/{job_id}", headers=bearer(c.tokens["alice"])).json()
    assert job["state"] == "queued"
    # Leave nothing queued for the other tests' overview counts.
    assert (
        c.running.http.post(
            f"/api/v1/jobs/{job_id}/cancel", headers=bearer(c.tokens["alice"])
        ).status_code
        == 200
    )


def test_admin_users_ledger_and_pricing_pages_act_through_the_api(
    panel_cluster: Cluster, page: Page
) -> None:
    c = panel_cluster
    ensure_admin(c, "ada")
    ensure_user(c, "erin")
    sign_in(page, c.running.http_base, "ada")
    admin = bearer(c.tokens["ada"])

    # Users: disable erin, see it, enable again.
    page.get_by_role("link", name="Users").click()
    page.get_by_label("Search").fill("erin")
    page.get_by_role("button", name="Apply filters").click()
    page.get_by_role("button", name="Disable erin").click()
    page.get_by_role("dialog").get_by_role("button", name="Disable").click()
    expect(page.get_by_role("button", name="Enable erin")).to_be_visible()
    erin_login = c.running.http.post(
        "/api/v1/auth/login", json={"username": "erin", "password": PASSWORD}
    )
    assert erin_login.status_code == 401
    page.get_by_role("button", name="Enable erin").click()
    page.get_by_role("dialog").get_by_role("button", name="Enable").click()
    expect(page.get_by_role("button", name="Disable erin")).to_be_visible()

    # Ledger: grant 2.5 CPT exactly.
    before = c.running.http.get("/api/v1/wallet/balance?username=erin", headers=admin).json()
    page.get_by_role("link", name="Ledger").click()
    grant = page.get_by_role("region", name="Grant CPT")
    grant.get_by_label("Username").fill("erin")
    grant.get_by_label("Amount (CPT)").fill("2.500001")
    grant.get_by_role("button", name="Review grant").click()
    page.get_by_role("dialog").get_by_role("button", name="Grant 2.500001 CPT").click()
    expect(
        page.get_by_role("status").filter(has_text="Granted 2.500001 CPT to erin")
    ).to_be_visible()
    after = c.running.http.get("/api/v1/wallet/balance?username=erin", headers=admin).json()
    assert after["balance_micro"] - before["balance_micro"] == 2_500_001
    page.get_by_role("button", name="Run the audit").click()
    expect(page.get_by_text("The books balance")).to_be_visible()

    # Pricing: change the CPU price; the API reports the new table.
    page.get_by_role("link", name="Pricing").click()
    cpu = page.get_by_label("CPU, per core-second (µCPT)")
    expect(cpu).not_to_have_value("")
    old = int(cpu.input_value())
    cpu.fill(str(old + 7))
    page.get_by_role("button", name="Review changes").click()
    page.get_by_role("dialog").get_by_role("button", name="Change prices").click()
    expect(
        page.get_by_role("status").filter(has_text="apply to jobs submitted from now")
    ).to_be_visible()
    prices = c.running.http.get("/api/v1/admin/pricing", headers=admin).json()
    assert prices["cpu_micro_per_core_second"] == old + 7
    assert prices["updated_by"] == "ada"

    page.get_by_role("link", name="Audit log").click()
    audit = page.get_by_role("table", name="Admin actions, newest first")
    for action in ("pricing.update", "ledger.grant", "user.enable", "user.disable"):
        expect(audit).to_contain_text(action)


def test_a_user_is_refused_admin_pages_with_the_api_sentence(
    panel_cluster: Cluster, page: Page
) -> None:
    c = panel_cluster
    signed_in(c, page, "alice")
    expect(page.get_by_role("heading", name="Administration")).to_have_count(0)
    go(page, "/admin/users")
    expect(page.get_by_role("alert")).to_contain_text("administrator")


# -- wallet ----------------------------------------------------------------------------------------------
def test_wallet_transfer_is_exact_to_the_micro_and_asks_first(
    panel_cluster: Cluster, page: Page
) -> None:
    c = panel_cluster
    ensure_user(c, "alice", grant_cpt=100)
    ensure_user(c, "frank")
    alice_before = c.balance("alice")
    frank_before = c.balance("frank")
    sign_in(page, c.running.http_base, "alice")
    page.get_by_role("link", name="My wallet").click()
    balance = page.locator("#wallet-balance")
    expect(balance).not_to_have_text("…")

    form = page.get_by_role("form", name="Send CPT")
    form.get_by_label("Recipient").fill("frank")
    # Seven decimals is below a micro-CPT: refused in the page, nothing sent.
    form.get_by_label("Amount (CPT)").fill("1.0000001")
    form.get_by_role("button", name="Review transfer").click()
    expect(form.get_by_role("alert")).to_contain_text("at most 6 decimal places")

    # Declining the confirmation sends nothing.
    form.get_by_label("Amount (CPT)").fill("1.000001")
    form.get_by_role("button", name="Review transfer").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("1.000001 CPT")
    expect(dialog).to_contain_text("1000001 µCPT")
    dialog.get_by_role("button", name="Cancel").click()
    assert c.balance("frank") == frank_before

    form.get_by_role("button", name="Review transfer").click()
    page.get_by_role("dialog").get_by_role("button", name="Send 1.000001 CPT").click()
    expect(form.get_by_role("status")).to_contain_text("Sent 1.000001 CPT to frank")
    assert c.balance("frank") == frank_before + 1_000_001
    assert c.balance("alice") == alice_before - 1_000_001
    expected = alice_before - 1_000_001
    whole, frac = divmod(expected, MICRO_PER_CPT)
    expect(balance).to_have_text(
        f"{whole:,}.{str(frac).rjust(6, '0').rstrip('0').ljust(2, '0')} CPT"
    )
    history = page.get_by_role("table", name="Transactions, newest first")
    expect(history.locator("tbody tr").first).to_contain_text("−1.000001 CPT")

    # An error from the API is shown as its own sentence.
    form.get_by_label("Recipient").fill("nobody-here")
    form.get_by_label("Amount (CPT)").fill("1")
    form.get_by_role("button", name="Review transfer").click()
    page.get_by_role("dialog").get_by_role("button", name="Send 1.00 CPT").click()
    expect(form.get_by_role("alert")).to_contain_text("nobody-here")


def test_sending_again_after_a_lost_answer_moves_the_money_once(
    panel_cluster: Cluster, page: Page
) -> None:
    """The transfer reaches the coordinator and is carried out, but the answer is lost on the way back
    (a real proxy cuts the connection). The page says it may have gone through; sending the same
    transfer again reuses its idempotency key, so the coordinator answers with the first result."""
    c = panel_cluster
    ensure_user(c, "gina", grant_cpt=10)
    ensure_user(c, "hank")
    gina_before, hank_before = c.balance("gina"), c.balance("hank")
    proxy = LossyProxy(c.running.http_base.removeprefix("http://"))
    try:
        base = f"http://{proxy.target}"
        sign_in(page, base, "gina")
        page.get_by_role("link", name="My wallet").click()
        form = page.get_by_role("form", name="Send CPT")
        form.get_by_label("Recipient").fill("hank")
        form.get_by_label("Amount (CPT)").fill("2")
        form.get_by_role("button", name="Review transfer").click()
        proxy.drop_answers.set()
        page.get_by_role("dialog").get_by_role("button", name="Send 2.00 CPT").click()
        expect(form.get_by_role("alert")).to_contain_text("may have gone through")
        assert c.balance("hank") == hank_before + 2 * MICRO_PER_CPT  # it did go through

        proxy.drop_answers.clear()
        form.get_by_role("button", name="Review transfer").click()
        page.get_by_role("dialog").get_by_role("button", name="Send 2.00 CPT").click()
        expect(form.get_by_role("status")).to_contain_text("Sent 2.00 CPT to hank")
        assert c.balance("hank") == hank_before + 2 * MICRO_PER_CPT
        assert c.balance("gina") == gina_before - 2 * MICRO_PER_CPT
    finally:
        proxy.close()


# -- accessibility -------------------------------------------------------------------------------------------
def focused(page: Page) -> dict[str, str]:
    """What has keyboard focus now, and how its focus ring is drawn."""
    state: dict[str, str] = page.evaluate(
        """() => { const el = document.activeElement; const s = getComputedStyle(el);
                   return {tag: el.tagName, text: (el.textContent || '').trim(), label: el.labels?.[0]?.textContent || '',
                           outline: s.outlineStyle, width: s.outlineWidth}; }"""
    )
    return state


def test_keyboard_alone_signs_in_and_moves_between_pages(
    panel_cluster: Cluster, page: Page
) -> None:
    c = panel_cluster
    ensure_user(c, "alice", grant_cpt=100)
    open_panel(page, c.running.http_base, "/signin")
    # The sign-in page starts in the username field; everything else is reached with Tab.
    assert focused(page)["label"] == "Username"
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    assert focused(page)["label"] == "Password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()

    # Tab from the top of a freshly loaded page: skip link first, then the header, then the navigation.
    page.reload()
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    seen = []
    for _ in range(12):
        page.keyboard.press("Tab")
        now = focused(page)
        seen.append(now["text"])
        assert now["outline"] != "none" and now["width"] != "0px", f"no visible focus on {now}"
        if now["text"] == "My wallet":
            break
    assert seen[0] == "Skip to content", seen
    assert "My wallet" in seen, f"My wallet not reached by Tab: {seen}"
    page.keyboard.press("Enter")
    heading = page.get_by_role("heading", name="My wallet", level=1)
    expect(heading).to_be_focused()

    # The skip link takes keyboard users straight to the content.
    page.reload()
    expect(heading).to_be_visible()
    page.keyboard.press("Tab")
    assert focused(page)["text"] == "Skip to content"
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()


def test_phone_viewport_collapses_the_navigation_and_fits_the_screen(
    panel_cluster: Cluster, browser: Browser
) -> None:
    c = panel_cluster
    ensure_user(c, "alice", grant_cpt=100)
    context, page = new_page(browser, PHONE)
    try:
        sign_in(page, c.running.http_base, "alice")
        nav = page.get_by_role("navigation", name="Main")
        menu = page.get_by_role("button", name="Menu")
        expect(menu).to_be_visible()
        expect(menu).to_have_attribute("aria-expanded", "false")
        expect(nav).to_be_hidden()
        for route in ("/overview", "/jobs", "/wallet"):
            go(page, route)
            page.wait_for_timeout(300)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], (
                f"{route} is {width}px wide on a {PHONE['width']}px phone"
            )
        menu.click()
        expect(menu).to_have_attribute("aria-expanded", "true")
        expect(nav).to_be_visible()
        nav.get_by_role("link", name="My jobs").click()
        expect(page.get_by_role("heading", name="My jobs", level=1)).to_be_visible()
        expect(nav).to_be_hidden()
        assert page.js_errors == []  # type: ignore[attr-defined]
    finally:
        context.close()


# -- exact money in the page's own code ------------------------------------------------------------------------
def test_money_is_formatted_and_parsed_exactly_in_the_browser(
    panel_cluster: Cluster, page: Page
) -> None:
    open_panel(page, panel_cluster.running.http_base, "/signin")
    result = page.evaluate(
        """async () => {
        const m = await import('/static/js/money.js');
        const api = await import('/static/js/api.js');
        const parsed = api.parseJson('{"balance_micro": 9007199254740993, "n": 1.5, "rows": [{"amount_micro": -1}]}');
        const errors = [];
        for (const bad of ['', 'abc', '1.2.3', '1.0000001', '-1', '0']) {
          try { m.parseCpt(bad); errors.push('accepted ' + bad); } catch (e) { errors.push(e.constructor.name); }
        }
        return {
          big: m.formatCpt(123456789012345678n),
          neg: m.formatCpt(-1n),
          round: m.formatCpt(100000000n),
          sign: m.formatCpt(2500000n, {sign: true}),
          p1: m.parseCpt('1,000.000001').toString(),
          p2: m.parseCpt(' 0.25 CPT ').toString(),
          p3: m.parseCpt('9007199254.740993', {max: 10n ** 18n}).toString(),
          json: parsed.balance_micro.toString(), jsonType: typeof parsed.balance_micro,
          nested: typeof parsed.rows[0].amount_micro, plain: parsed.n,
          out: api.toJson({amount_micro: 9007199254740993n}),
          errors,
        };
    }"""
    )
    assert result["big"] == "123,456,789,012.345678 CPT"
    assert result["neg"] == "−0.000001 CPT"
    assert result["round"] == "100.00 CPT"
    assert result["sign"] == "+2.50 CPT"
    assert result["p1"] == "1000000001"
    assert result["p2"] == "250000"
    assert result["p3"] == "9007199254740993"
    # Beyond 2^53 a float would have rounded these; the panel keeps every digit both ways.
    assert result["json"] == "9007199254740993" and result["jsonType"] == "bigint"
    assert result["nested"] == "bigint" and result["plain"] == 1.5
    assert result["out"] == '{"amount_micro":9007199254740993}'
    assert result["errors"] == ["AmountError"] * 6
