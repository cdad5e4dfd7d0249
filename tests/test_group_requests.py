"""The paper config's group jobs under the SLURM profile ask for what their members need together:
enough for their estimated work plus the lead before SLURM's signal, never more than twice the work
(ci/check_group_requests.py, a dry run of about half a minute)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_paper_group_jobs_ask_for_their_members_work():
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.run([sys.executable, "ci/check_group_requests.py"], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "check: largest group job:" in proc.stdout
    groups = next(line for line in proc.stdout.splitlines() if line.startswith("check: ") and "group jobs;" in line)
    assert int(groups.split()[1]) > 0
