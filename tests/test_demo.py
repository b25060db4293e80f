"""The README's main command runs end to end and exits 0."""

from __future__ import annotations

import subprocess
import sys


def test_hivemind_demo_runs_end_to_end() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "coordinator", "demo"], capture_output=True, text=True, timeout=180
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "moved once" in r.stdout
    assert "funds" in r.stdout  # the refused overdraft explains itself
    assert "Demo finished: everything behaved." in r.stdout
