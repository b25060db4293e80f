"""CI's installer step: one line in .ci/run, after the tests, running a strict script that parses."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHECK = REPO / "installer" / "check.sh"


def test_check_script_is_executable_strict_bash_that_parses() -> None:
    assert os.access(CHECK, os.X_OK)
    text = CHECK.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    subprocess.run(["bash", "-n", str(CHECK)], check=True)


def test_ci_runs_the_installer_check_after_the_tests() -> None:
    steps = re.findall(r"^step (\w+) (.+)$", (REPO / ".ci" / "run").read_text(), re.MULTILINE)
    names = [name for name, _ in steps]
    assert ("installer", "bash installer/check.sh") in steps
    assert names.index("installer") == names.index("test") + 1


def test_check_script_refuses_a_bad_option() -> None:
    result = subprocess.run(
        ["bash", str(CHECK), "--bogus"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "usage: bash installer/check.sh [--no-build]" in result.stderr
