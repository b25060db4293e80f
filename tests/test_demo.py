"""The README's main command runs end to end (real coordinator, real workers, real containers) and exits 0."""

from __future__ import annotations

import subprocess
import sys


def test_hivemind_demo_runs_end_to_end() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "coordinator", "demo"], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "checksum job output (both replicas agreed)" in r.stdout
    assert "read step 1's numbers and wrote: 55" in r.stdout
    assert "{'status': 'ok'}" in r.stdout
    assert "Demo finished: everything behaved." in r.stdout
