"""The oracle adapter's plumbing: fast JSON of float vectors, lazy extension imports."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

import ntxmeta.oracle as oracle
from oracle_util import FIXTURES


def test_dumps_is_byte_for_byte_the_json_module():
    """The vector fast path must give exactly ``json.dumps(..., indent=1)`` (values from
    the json module itself, the independent reference), non-finite values included."""
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, 500) * 10.0 ** rng.integers(-20, 20, 500)
    x[[3, 50, 400]] = [np.nan, np.inf, -np.inf]
    x[7] = -0.0
    result = {"a": {"weights_pct": x, "short": x[:5], "nested": [x, {"deep": x}]},
              "ints": np.arange(100), "s": "text", "f": 1.5}
    want = json.dumps(oracle._jsonable(result), indent=1, allow_nan=False) + "\n"
    assert oracle.dumps(result) == want
    assert oracle.dumps_bytes(result) == want.encode("utf-8")
    assert oracle.dumps_bytes({"no": "vectors", "x": x[:3]}) == (
        json.dumps(oracle._jsonable({"no": "vectors", "x": x[:3]}), indent=1) + "\n").encode()
    assert len(x) >= oracle.VECTOR_MIN        # so that the fast path was taken


def test_extension_map_names_what_each_module_registers():
    oracle._load_extensions()
    registered = set(oracle.SECTIONS) - {"escalc", "rma", "rma_knha", "common"}
    assert registered == set(oracle.EXTENSION_SECTIONS)
    assert list(oracle.SECTION_ORDER) == [name for name, _ in oracle._sections_in_order()]


def test_only_rma_does_not_import_the_heavy_libraries():
    spec = FIXTURES / "bcg_RR" / "spec.json"
    code = ("import sys, ntxmeta.oracle as o; o.analyse(sys.argv[1], only='rma.REML'); "
            "print(sorted(m for m in ('statsmodels', 'pymare', 'scipy.stats', 'ntxmeta.bias', "
            "'ntxmeta.confint') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(spec)], check=True,
                         capture_output=True, text=True).stdout.strip()
    assert out == "[]"
