"""FUZZ: schemathesis against /openapi.json of a live coordinator, signed in as an admin so the admin
routes are reached past their auth check. No request may get a 5xx answer. Bounded: a few examples per
operation, a per-request timeout and a hard cap on the whole run, so it fits in CI (about a minute here).

A failure prints schemathesis's report, including a curl command that reproduces each failing request.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import RunningCoordinator

pytestmark = pytest.mark.fuzz

MAX_EXAMPLES = int(os.environ.get("HIVEMIND_FUZZ_EXAMPLES", "6"))
RUN_CAP_S = 240
"""Hard cap on the whole schemathesis run; it normally needs well under half of this."""


def schemathesis_cli() -> list[str]:
    script = Path(sys.executable).with_name("schemathesis")
    return [str(script)] if script.exists() else [sys.executable, "-m", "schemathesis.cli"]


def test_no_request_to_the_http_api_gets_a_server_error(tmp_path: Path) -> None:
    with RunningCoordinator.start(
        db_url=f"sqlite:///{tmp_path / 'c.db'}",
        data_dir=tmp_path / "data",
        # Fuzzed sign-ins with wrong passwords must not lock the admin's own later requests out.
        login_max_failures_per_address=100_000,
    ) as running:
        # A name no schema example uses, so generated requests rarely act on the admin account itself.
        token = running.make_admin("fuzz-operator")
        running.signup("fuzz-user")
        command = [
            *schemathesis_cli(),
            "run",
            f"{running.http_base}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--header",
            f"Authorization: Bearer {token}",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "15",
            "--seed",
            "20261128",
            "--workers",
            "2",
            "--suppress-health-check",
            "all",
            "--no-color",
        ]
        try:
            run = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=RUN_CAP_S,
                cwd=tmp_path,
                env={
                    **os.environ,
                    "SCHEMATHESIS_TELEMETRY": "false",
                },
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode()
            pytest.fail(f"schemathesis ran past {RUN_CAP_S} s; last output:\n{out[-4000:]}")
        report = run.stdout + run.stderr
        assert run.returncode == 0, (
            f"schemathesis found requests the API answered with 5xx:\n{report}"
        )
        # It really ran against this API (not, say, a schema it could not load).
        assert "/api/v1/" in report, report
        assert running.http.get("/healthz").status_code == 200
