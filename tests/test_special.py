"""``ntxmeta._special`` hands out scipy.special's own functions.

It reaches them through ``scipy.special._ufuncs`` without scipy.special's
array-API layer; the results stay scipy's bits only because the objects are
the very ones ``scipy.special`` exports. These tests check that identity
(in this process and in a fresh one, where the shortcut is taken) and that
the shortcut leaves no placeholder behind: a later ``import scipy.special``
is the real package.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import scipy.special

from ntxmeta import _special

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_every_function_is_scipy_specials_own():
    for name in _special.NAMES:
        assert getattr(_special, name) is getattr(scipy.special, name), name


FRESH = r"""
import sys
import numpy
from ntxmeta import _special
assert "scipy.special" not in sys.modules, "the shortcut was not taken"
assert "scipy.special._ufuncs" in sys.modules
import scipy
assert "special" not in vars(scipy), "placeholder left on the scipy package"
import scipy.special
assert hasattr(scipy.special, "logsumexp"), "scipy.special is not the real package"
assert scipy.special._ufuncs is sys.modules["scipy.special._ufuncs"]
for name in _special.NAMES:
    assert getattr(_special, name) is getattr(scipy.special, name), name
import scipy.stats
assert scipy.stats.norm.isf(0.025) == -_special.ndtri(0.025)
print("ok")
"""


def _fresh(env_extra: dict) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC, **env_extra}
    return subprocess.run([sys.executable, "-c", FRESH], env=env, capture_output=True, text=True)


def test_a_fresh_process_takes_the_shortcut_and_scipy_special_stays_whole():
    run = _fresh({})
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def test_with_scipys_array_api_on_the_ordinary_import_is_used():
    # SCIPY_ARRAY_API makes scipy.special dispatch on array types: then no shortcut
    run = _fresh({"SCIPY_ARRAY_API": "1"})
    assert "the shortcut was not taken" in run.stderr
