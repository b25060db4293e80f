"""The overview every signed-in user sees: nodes online and their free capacity, jobs by state, the dispatch
rate, what was paid today, and the last hour minute by minute - after real leases and payments."""

from __future__ import annotations

from coordinator.scheduling.service import PollRequest
from tests.admin.conftest import Admin
from tests.admin.helpers import funded, run_until_final, submit, volunteer
from tests.jobs.helpers import run_on_loop
from tests.support import bearer


def test_overview_after_a_finished_job_and_a_running_one(admin: Admin) -> None:
    c = admin.c
    _, carol = funded(c, "carol")
    done = submit(c, carol, name="done")
    run_until_final(c, [done])  # two volunteers' nodes, one lease each, paid 1000 each
    submit(c, carol, name="running")
    holder = volunteer(c)
    request = PollRequest(1, 8, 16, 0, 0, True, False)
    assert len(run_on_loop(c, c.coordinator.dispatcher.poll(holder.node, request))) == 1

    r = c.http.get("/api/v1/overview", headers=bearer(admin.bob_token))
    assert r.status_code == 200, r.text
    o = r.json()
    assert o["nodes_online"] == 3
    assert o["cpu_cores_available"] == 3 * 8 - 1  # the running lease holds one core
    assert o["gpus_available"] == 0
    assert (o["jobs_queued"], o["jobs_running"], o["jobs_done"]) == (0, 1, 1)
    assert (o["jobs_failed"], o["jobs_cancelled"], o["jobs_waiting"]) == (0, 0, 0)
    assert o["dispatch_rate_per_min"] == 3
    assert o["paid_today_micro"] == 2000
    series = o["series"]
    assert len(series) == 60
    assert sum(p["leases_per_min"] for p in series) == 3
    assert sum(p["paid_micro"] for p in series) == 2000
    now = series[-1]
    assert (now["nodes_online"], now["jobs_queued"], now["jobs_running"]) == (3, 0, 1)
