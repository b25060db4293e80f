"""``hivemind job ...`` against a real coordinator: run in-process through the same parser and ``run_job`` the
``hivemind`` command uses, plus one real subprocess for the password on standard input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from client_gui.engine import job_cli
from tests.jobs.conftest import JobsCoordinator
from tests.jobs.helpers import CPT, balance, complete_only_task, counts, fund, sha
from tests.support import PASSWORD, bearer

REPO = Path(__file__).resolve().parents[2]


class Cli:
    """Runs ``hivemind job ...`` in-process as one signed-in user; returns (exit code, stdout, stderr)."""

    def __init__(
        self, jc: JobsCoordinator, capsys: pytest.CaptureFixture[str], user_id: int, token: str
    ) -> None:
        self.running = jc.running
        self.target = jc.grpc_target
        self.capsys = capsys
        self.user_id = user_id
        self.token = token

    def balance(self) -> int:
        return balance(self.running, self.user_id)

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = job_cli.main(["job", "--coordinator", self.target, *argv])
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def cli(
    sqlite_jobs: JobsCoordinator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Cli:
    c = sqlite_jobs.running
    user_id, token = c.signup("ada")
    fund(c, user_id, 10 * CPT)
    for name in ("HIVEMIND_USERNAME", "HIVEMIND_PASSWORD", "HIVEMIND_COORDINATOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HIVEMIND_TOKEN", token)
    return Cli(sqlite_jobs, capsys, user_id, token)


def test_submit_from_flags_uploads_inputs_and_holds_the_budget(
    cli: Cli, sqlite_jobs: JobsCoordinator, tmp_path: Path
) -> None:
    c = sqlite_jobs.running
    data = tmp_path / "data.csv"
    data.write_bytes(b"1,2,3\n")
    params = tmp_path / "params.jsonl"
    params.write_text('{"args": ["1"]}\n\n{"env": {"N": "2"}, "args": ["2"]}\n')
    code, out, err = cli(
        "submit",
        "--name",
        "sum",
        "--image",
        "python:3.11-slim",
        "--input",
        f"{data}:in/data.csv",
        "--output",
        "out.txt",
        "--env",
        "MODE=fast",
        "--cpu",
        "2",
        "--memory-gb",
        "1.5",
        "--timeout",
        "600",
        "--priority",
        "5",
        "--budget",
        "1.25",
        "--param-file",
        str(params),
        "--",
        "python3",
        "sum.py",
        "--verbose",
    )
    assert code == 0, err
    job_id = out.strip()
    assert "1.25 CPT held in escrow" in err and "2 task(s)" in err
    assert f"{data}: uploaded" in err

    code, out, _ = cli("status", job_id)
    assert code == 0
    assert "state     queued" in out and "1.25 CPT held" in out
    rows = [line.split() for line in out.splitlines() if line[:1].isdigit()]
    assert [r[:2] for r in rows] == [["0", "queued"], ["1", "queued"]]

    job = c.http.get(f"/api/v1/jobs/{job_id}", headers=bearer(cli.token)).json()
    s = job["spec"]
    assert s["command"] == ["python3", "sum.py", "--verbose"]
    assert s["inputs"] == [
        {"path": "in/data.csv", "sha256": sha(b"1,2,3\n"), "from_job_id": "", "from_output": ""}
    ]
    assert (s["env"], s["output_paths"], s["timeout_s"], s["priority"]) == (
        {"MODE": "fast"},
        ["out.txt"],
        600,
        5,
    )
    assert (s["resources"]["cpu_cores"], s["resources"]["memory_gb"]) == (2.0, 1.5)
    assert s["parameter_sets"] == [{"env": {}, "args": ["1"]}, {"env": {"N": "2"}, "args": ["2"]}]

    code, out, _ = cli("list")
    assert code == 0 and job_id in out and "0/2" in out and "sum" in out

    code, out, _ = cli("cancel", job_id)
    assert code == 0 and out.strip() == f"Cancelled job {job_id}; 1.25 CPT refunded."


def test_submit_from_a_spec_file_with_a_local_input(
    cli: Cli, sqlite_jobs: JobsCoordinator, tmp_path: Path
) -> None:
    (tmp_path / "data.csv").write_bytes(b"x\n")
    spec = tmp_path / "job.json"
    spec.write_text(
        json.dumps(
            {
                "image": "python:3.11-slim",
                "command": ["python3", "main.py"],
                "inputs": [{"local": "data.csv"}],
                "array_size": 3,
                "budget_cpt": "0.5",
            }
        )
    )
    code, out, err = cli("submit", "--spec", str(spec), "--idempotency-key", "k1")
    assert code == 0, err
    again, out2, _ = cli("submit", "--spec", str(spec), "--idempotency-key", "k1")
    assert again == 0 and out2 == out  # the same job, held once
    assert cli.balance() == 10 * CPT - CPT // 2
    assert counts(sqlite_jobs.running)["tasks"] == 3


SUBMIT = ["submit", "--image", "alpine"]
USAGE_MISTAKES: list[tuple[list[str], str]] = [
    (["submit", "--budget", "1", "--", "true"], "Give --image"),
    ([*SUBMIT, "--budget", "1"], "Give the command to run after --"),
    ([*SUBMIT, "--", "true"], "Give --budget"),
    ([*SUBMIT, "--budget", "0.0000001", "--", "true"], "6 decimals"),
    ([*SUBMIT, "--budget", "-3", "--", "true"], "more than 0 CPT"),
    ([*SUBMIT, "--budget", "1", "--env", "NOVALUE", "--", "true"], "KEY=VALUE"),
    ([*SUBMIT, "--budget", "1", "--input", "/no/such/file", "--", "true"], "does not exist"),
    (["submit", "--spec", "/no/such/spec.json"], "Cannot read"),
    (["submit", "--spec", "SPEC", "--image", "alpine"], "not both"),
    (["submit", "--spec", "SPEC"], "unknown field(s) cpu"),
    ([], "Say what to do"),
]


def test_usage_mistakes_exit_2_and_change_nothing(
    cli: Cli, sqlite_jobs: JobsCoordinator, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.json"
    (tmp_path / "data.csv").write_text("1\n")
    spec.write_text(
        json.dumps(
            {"image": "alpine", "command": ["true"], "inputs": [{"local": "data.csv"}], "cpu": 2}
        )
    )
    before = counts(sqlite_jobs.running)
    for argv, fragment in USAGE_MISTAKES:
        code, out, err = cli(*[str(spec) if a == "SPEC" else a for a in argv])
        assert (code, out) == (2, ""), (argv, err)
        assert err.startswith("error: ") and fragment in err, (argv, err)
    assert counts(sqlite_jobs.running) == before and cli.balance() == 10 * CPT


COORDINATOR_REFUSALS: list[tuple[list[str], str]] = [
    (["--image", "Not Valid", "--budget", "1"], "is not a valid image name"),
    (["--image", "alpine", "--cpu", "-1", "--budget", "1"], "cpu_cores cannot be negative"),
    (["--image", "alpine", "--budget", "50"], "nsufficient"),
    (["--image", "alpine", "--budget", "0.000001"], "minimum cost"),
    (["--image", "alpine", "--budget", "1", "--depends-on", "nope"], "not one of your jobs"),
]


def test_refusals_by_the_coordinator_exit_1_and_hold_nothing(
    cli: Cli, sqlite_jobs: JobsCoordinator
) -> None:
    before = counts(sqlite_jobs.running)
    for argv, fragment in COORDINATOR_REFUSALS:
        code, out, err = cli("submit", *argv, "--", "true")
        assert (code, out) == (1, ""), (argv, err)
        assert err.startswith("error: ") and fragment in err, (argv, err)
    assert counts(sqlite_jobs.running) == before and cli.balance() == 10 * CPT


def test_other_users_jobs_and_missing_credentials(
    cli: Cli, sqlite_jobs: JobsCoordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, job_id, _ = cli("submit", "--image", "alpine", "--budget", "1", "--", "true")
    assert code == 0
    _, bob = sqlite_jobs.running.signup("bob")
    monkeypatch.setenv("HIVEMIND_TOKEN", bob)
    for action in ("status", "cancel", "logs", "results"):
        code, _, err = cli(action, job_id.strip())
        assert code == 1 and "belongs to someone else" in err, (action, err)
    monkeypatch.delenv("HIVEMIND_TOKEN")
    code, _, err = cli("list")
    assert code == 2 and "Sign in first" in err
    monkeypatch.setenv("HIVEMIND_PASSWORD", "wrong password")
    code, _, err = cli("--username", "ada", "list")
    assert code == 1 and err.startswith("error: ")


def test_logs_and_results_of_a_finished_job(
    cli: Cli, sqlite_jobs: JobsCoordinator, tmp_path: Path
) -> None:
    code, out, _ = cli(
        "submit", "--image", "alpine", "--output", "out.txt", "--budget", "1", "--", "true"
    )
    job_id = out.strip()
    assert job_id == complete_only_task(
        sqlite_jobs.running,
        {"out.txt": b"42\n"},
        b"hello\n",
        [("stdout", "starting"), ("stderr", "careful")],
    )
    code, out, err = cli("logs", job_id, "--follow")
    assert (code, out, err) == (0, "starting\n", "careful\n")

    dest = tmp_path / "results"
    code, out, err = cli("results", job_id, "--dest", str(dest))
    assert code == 0, err
    assert (dest / "task-0" / "out.txt").read_bytes() == b"42\n"
    assert (dest / "task-0" / "stdout.txt").read_bytes() == b"hello\n"
    code, out, _ = cli("status", job_id)
    assert "state     completed" in out and "out.txt" in out
    code, _, err = cli("results", job_id, "--task", "7", "--dest", str(dest))
    assert code == 2 and "has no task 7" in err


def test_results_of_an_unfinished_job_say_so(cli: Cli, tmp_path: Path) -> None:
    _, out, _ = cli("submit", "--image", "alpine", "--budget", "1", "--", "true")
    code, _, err = cli("results", out.strip(), "--dest", str(tmp_path / "r"))
    assert code == 1 and "task 0: no verified result (queued)" in err
    assert not (tmp_path / "r").exists()


def test_password_on_standard_input_in_a_real_process(sqlite_jobs: JobsCoordinator) -> None:
    sqlite_jobs.running.register("ada")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVEMIND_")}
    env["PYTHONPATH"] = str(REPO)
    argv = [sys.executable, "-m", "client_gui.engine.job_cli", "job", "list"]
    argv += ["--coordinator", sqlite_jobs.grpc_target, "--username", "ada"]
    done = subprocess.run(
        argv,
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "No jobs yet.", "")
    done = subprocess.run(
        argv, input="wrong\n", capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 1 and done.stderr.startswith("error: ")
