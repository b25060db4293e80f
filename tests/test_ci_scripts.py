"""Checks on the setup/CI shell scripts: they parse, are executable, and CI runs
exactly the test command the README documents."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = [
    REPO / ".ci" / "run",
    REPO / "scripts" / "setup.sh",
    REPO / "scripts" / "services.sh",
    REPO / "scripts" / "build_images.sh",
    REPO / "scripts" / "test.sh",
    REPO / "installer" / "check.sh",
]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_script_is_executable_strict_bash_that_parses(script: Path) -> None:
    assert script.is_file()
    assert os.access(script, os.X_OK), f"{script} is not executable"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    assert "bash scripts/setup.sh && bash scripts/test.sh" in readme
    steps = re.findall(r"^step (\w+) (.+)$", (REPO / ".ci" / "run").read_text(), re.MULTILINE)
    assert steps == [
        ("setup", "bash scripts/setup.sh"),
        ("services", "bash scripts/services.sh start"),
        ("images", "bash scripts/build_images.sh"),
        ("test", "bash scripts/test.sh"),
        ("installer", "bash installer/check.sh"),
    ]


def test_services_env_prints_the_test_urls() -> None:
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "services.sh"), "env"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert out.splitlines() == [
        "export HIVEMIND_TEST_PG_URL="
        "'postgresql+psycopg://hivemind:hivemind@127.0.0.1:5432/hivemind_test'",
        "export HIVEMIND_TEST_REDIS_URL='redis://127.0.0.1:6379/15'",
    ]


@pytest.mark.parametrize("args", [[], ["restart"], ["start", "mysql"]])
def test_services_rejects_bad_usage(args: list[str]) -> None:
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "services.sh"), *args],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Usage" in proc.stderr
