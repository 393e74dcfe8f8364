"""The synthetic registry of bench/make_registry.py is a project the workflow can run.

The registry benchmark copies only some parts of the project; when a rule
gained an input outside them (data/reference/published_estimates.csv) the
benchmark stopped at its first job. A dry run finds a missing input or a
config the checks refuse without running any job.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import make_registry  # noqa: E402  (a script folder, not a package)


def test_registry_copy_has_every_input_of_the_workflow(tmp_path):
    summary = make_registry.write_registry(tmp_path, trials=60, analyses=4, seed=3)
    assert summary["analyses"] == 4
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--dry-run", "--cores", "1"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "MissingInput" not in proc.stdout + proc.stderr
    # the job table of the dry run lists one pool job per analysis
    assert re.search(r"^pool\s+4$", proc.stdout, re.M), proc.stdout[-3000:]
    assert re.search(r"^figures\s+4$", proc.stdout, re.M), proc.stdout[-3000:]
