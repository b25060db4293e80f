"""The Earnings view and the EarningsModel: a real task run by this computer's real engine (Docker) for
another user's job, paid by the real coordinator, shows up to the micro-CPT as the ledger has it; and the
rules that turn ledger rows into today, the last 7 days and a rate per day."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlmodel import select

from client_gui.engine.account_client import TASK_PAYMENT, AccountClient, LedgerRow
from client_gui.engine.jobs_client import JobsClient, format_cpt
from client_gui.ui.context import AppContext
from client_gui.ui.controllers.earnings import EarningsController
from client_gui.ui.earnings_model import summarize
from client_gui.ui.views.earnings import EarningsView
from coordinator.jobs.models import Lease
from tests.jobs.helpers import CPT, fund
from tests.support import RunningCoordinator
from tests.ui._views_support import cell, settle, volunteers
from tests.ui.conftest import BUSYBOX, GRANT_CPT, Person

UTC = dt.UTC
HERE = dt.timezone(dt.timedelta(hours=2))  # a local zone two hours east of UTC


def row(at: dt.datetime, amount: int, kind: str = TASK_PAYMENT, memo: str = "") -> LedgerRow:
    return LedgerRow(
        transaction_id=f"tx-{at.isoformat()}-{amount}",
        kind=kind,
        amount_micro=amount,
        counterparty="escrow:job",
        at=at.astimezone(UTC),
        memo=memo or "Task 0 of job j",
        balance_after_micro=0,
    )


def test_today_starts_at_local_midnight_and_the_week_has_a_zero_for_each_quiet_day() -> None:
    now = dt.datetime(2026, 11, 28, 10, 0, tzinfo=HERE)
    rows = [
        row(dt.datetime(2026, 11, 28, 0, 1, tzinfo=HERE), 1_001),  # today, local
        row(dt.datetime(2026, 11, 27, 23, 59, tzinfo=HERE), 2_002),  # yesterday, local (today UTC)
        row(dt.datetime(2026, 11, 25, 12, 0, tzinfo=HERE), 30_003),
        row(dt.datetime(2026, 11, 22, 0, 0, tzinfo=HERE), 400_004),  # first day of the window
        row(dt.datetime(2026, 11, 21, 23, 59, tzinfo=HERE), 5_000_000),  # before the window
        row(dt.datetime(2026, 11, 28, 9, 0, tzinfo=HERE), 777, kind="transfer"),  # not earned
    ]
    figures = summarize(rows, 123, now)
    assert figures.balance_micro == 123
    assert figures.today_micro == 1_001
    assert figures.daily == [
        (dt.date(2026, 11, 22), 400_004),
        (dt.date(2026, 11, 23), 0),
        (dt.date(2026, 11, 24), 0),
        (dt.date(2026, 11, 25), 30_003),
        (dt.date(2026, 11, 26), 0),
        (dt.date(2026, 11, 27), 2_002),
        (dt.date(2026, 11, 28), 1_001),
    ]
    assert figures.week_micro == 1_001 + 2_002 + 30_003 + 400_004
    assert [p.amount_micro for p in figures.payments] == [1_001, 2_002, 30_003, 400_004]
    # earning for longer than a day: the rate is what the last 24 hours brought
    assert figures.rate_per_day_micro == 1_001 + 2_002


def test_a_computer_earning_for_less_than_a_day_is_extrapolated_from_when_it_began() -> None:
    now = dt.datetime(2026, 11, 28, 10, 0, tzinfo=HERE)
    six_hours = [row(now - dt.timedelta(hours=h), 10_000) for h in (6, 4, 2)]
    assert summarize(six_hours, 0, now).rate_per_day_micro == 30_000 * 4
    # one payment a minute ago counts as an hour's earnings, not a minute's
    just_now = [row(now - dt.timedelta(minutes=1), 10_000)]
    assert summarize(just_now, 0, now).rate_per_day_micro == 10_000 * 24
    assert summarize([], 0, now).rate_per_day_micro == 0


def test_a_task_this_computer_ran_shows_as_the_ledger_paid_it(
    qtbot: Any,
    ui_coordinator: RunningCoordinator,
    volunteer: Person,
    submitter: Person,
    app_context: AppContext,
    tmp_path: Path,
) -> None:
    c = ui_coordinator
    view = EarningsView()
    qtbot.addWidget(view)
    EarningsController(view, app_context)
    model = app_context.earnings
    settle(qtbot, app_context, lambda: model.loaded)
    assert view.today.text() == format_cpt(0) and view.payments.rowCount() == 0
    assert view.balance.text() == format_cpt(GRANT_CPT * CPT)

    app_context.engine.start()
    # carol's computer cross-checks the result of this new one
    with (
        volunteers(c, ["carol"], tmp_path),
        JobsClient(c.grpc_target, token=submitter.token) as jobs,
    ):
        job = jobs.submit_job(
            {
                "name": "greeting",
                "image": BUSYBOX,
                "command": ["sh", "-c", "echo hello, volunteers"],
                "resources": {"cpu_cores": 0.5, "memory_gb": 0.125},
                "timeout_s": 120,
                "max_budget_micro": CPT,
            }
        )
        qtbot.waitUntil(lambda: jobs.get(job.job_id).finished, timeout=120_000)
        done = jobs.get(job.job_id)
        assert done.state == "completed", done
    # The payment is made once a second computer agreed, which may be after this one's task ended:
    # the model's 15 s timer brings it in if the engine's task_finished came too early.
    settle(qtbot, app_context, lambda: model.payments, timeout_s=60)

    with AccountClient(c.grpc_target, token=volunteer.token) as statement:
        ledger_rows, _ = statement.transactions()
        balance = statement.balance()
    paid = [r for r in ledger_rows if r.kind == TASK_PAYMENT]
    assert len(paid) == 1 and paid[0].amount_micro > 0
    with c.coordinator.db.read() as s:
        leases = s.exec(select(Lease).where(Lease.job_id == job.job_id)).all()
        ours = [x for x in leases if x.node_owner_id == volunteer.user_id]
    assert len(ours) == 1 and ours[0].state == "valid"
    amount = paid[0].amount_micro
    assert amount == ours[0].paid_micro  # the ledger row is this computer's payment

    # The model and the view say exactly what the ledger says.
    assert [(p.transaction_id, p.amount_micro) for p in model.payments] == [
        (paid[0].transaction_id, amount)
    ]
    assert model.today_micro == sum(p.amount_micro for p in paid) == model.week_micro
    assert view.today.text() == format_cpt(amount)
    assert view.week.text() == format_cpt(amount)
    assert view.balance.text() == format_cpt(balance) == format_cpt(GRANT_CPT * CPT + amount)
    assert view.payments.rowCount() == 1
    assert cell(view.payments, 0, 1) == "Task 0 of job greeting"
    assert cell(view.payments, 0, 2) == format_cpt(amount)
    assert view.rate.text().endswith(" a day") and model.rate_per_day_micro() > 0

    # The chart: seven bars, today's last and as tall as the payment, each saying its amount.
    bars = view.chart.bars()
    assert len(bars) == 7 and bars[-1].value == amount
    assert bars[-1].description == f"Today: {format_cpt(amount)}"
    assert all(b.value == 0 for b in bars[:-1])
    view.resize(700, 500)
    view.show()
    middle = view.chart.bar_rect(6).center().toPoint()
    assert view.chart.tooltip_at(middle) == bars[-1].description
    assert format_cpt(amount) in view.chart.accessibleDescription()
    assert not view.grab().isNull()


def test_a_finished_task_makes_the_model_read_the_ledger_again(
    qtbot: Any, ui_coordinator: RunningCoordinator, volunteer: Person, app_context: AppContext
) -> None:
    model = app_context.earnings
    model.follow(app_context.engine)
    model.follow(app_context.engine)  # following twice still reads once per task
    model.refresh()
    settle(qtbot, app_context, lambda: model.loaded)
    assert model.balance_micro == GRANT_CPT * CPT
    fund(ui_coordinator, volunteer.user_id, 42)
    reads: list[None] = []
    model.changed.connect(lambda: reads.append(None))
    # What the engine emits when a task on this computer ends (the model's own timer is 15 s away).
    app_context.engine.task_finished.emit(object())
    settle(qtbot, app_context, lambda: model.balance_micro == GRANT_CPT * CPT + 42)
    assert len(reads) == 1
