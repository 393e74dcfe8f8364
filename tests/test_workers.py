"""Worker processes of a local run (ntxmeta.workflow.offload).

profiles/default runs jobs as threads of one Snakemake process; the heavy
steps are handed to worker processes so that a run uses every core. These
tests check that a step really runs in another process, that its errors
come back to the job that asked, that the answer does not depend on where
it was computed, and that no worker outlives a run killed with SIGKILL.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ntxmeta import workflow

#: How long a killed run's workers may take to notice (their check runs
#: every ORPHAN_CHECK_S; a loaded machine may be slow to schedule them).
ORPHAN_GRACE_S = 20 * workflow.ORPHAN_CHECK_S


def fails(message: str) -> None:
    raise ValueError(message)


@pytest.fixture
def two_workers():
    workflow.use_workers(2)
    yield
    workflow.use_workers(0)


def test_without_workers_the_step_runs_in_the_caller():
    workflow.use_workers(1)
    assert workflow.offload(os.getpid) == os.getpid()
    workflow.use_workers(0)
    assert workflow.offload(os.getpid) == os.getpid()


def test_with_workers_the_step_runs_in_another_process(two_workers):
    pid = workflow.offload(os.getpid)
    assert pid != os.getpid()
    assert workflow.offload(os.getppid) == os.getpid()  # a child of this process


def test_a_worker_error_reaches_the_caller(two_workers):
    with pytest.raises(ValueError, match="bad row 7"):
        workflow.offload(fails, "bad row 7")
    assert workflow.offload(abs, -3) == 3  # the pool survives an error


def test_same_answer_in_a_worker_and_in_the_caller(two_workers):
    from ntxmeta.rma import rma
    y, v = [0.1, -0.3, 0.25, 0.6, -0.05], [0.04, 0.02, 0.05, 0.03, 0.06]
    here = rma(y, v, method="REML")
    there = workflow.offload(rma, y, v)
    assert (there.tau2, there.estimate, there.se) == (here.tau2, here.estimate, here.se)  # bit for bit


def test_workers_end_when_the_run_is_killed(tmp_path):
    """SIGKILL the process that started the workers mid-step: they exit on their own."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent("""
        import os, threading, time
        from ntxmeta import workflow
        if __name__ == "__main__":
            workflow.use_workers(2)
            pids = {workflow.offload(os.getpid) for _ in range(20)}
            for _ in range(2):  # both workers busy with a long step when the kill comes
                threading.Thread(target=workflow.offload, args=(time.sleep, 600)).start()
            time.sleep(1)
            print(" ".join(map(str, sorted(pids))), flush=True)
            time.sleep(600)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert workers and all(alive(p) for p in workers)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + ORPHAN_GRACE_S
        while any(alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [p for p in workers if alive(p)]
        for p in left:  # leave nothing behind even when the test fails
            os.kill(p, signal.SIGKILL)
        assert not left, f"worker(s) {left} outlived the killed run"
    finally:
        if proc.poll() is None:
            proc.kill()


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def write_when_orphaned(target: str) -> None:
    """A step that notices its run has ended and tries to write anyway (as a slow figure would)."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.001)
    from ntxmeta.io import write_text
    write_text(target, "written after the run was killed\n")


def test_a_worker_puts_no_output_in_place_after_the_run_is_killed(tmp_path):
    """The worker's write is refused at the rename (io's commit guard), not only by the 0.5 s
    watch, and the worker deletes the temporary file it wrote before it exits."""
    target = tmp_path / "figure.svg"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, threading, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from ntxmeta import workflow
        from test_workers import write_when_orphaned
        if __name__ == "__main__":
            workflow.use_workers(2)
            print(workflow.offload(os.getpid), flush=True)
            threading.Thread(target=workflow.offload,
                             args=(write_when_orphaned, {str(target)!r})).start()
            time.sleep(600)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()
        time.sleep(1.0)  # the step has started and waits
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        time.sleep(3 * workflow.ORPHAN_CHECK_S + 1)
        assert not target.exists(), "a worker wrote an output after its run was killed"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["run.py"], "its temporary is left"
    finally:
        if proc.poll() is None:
            proc.kill()
