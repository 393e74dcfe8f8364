"""The scipy.special functions of the engine's core, loaded without scipy's array-API layer.

``ndtr``, ``ndtri``, ``stdtr``, ``stdtrit``, ``chdtrc``, ``fdtrc`` and
``gammaln`` are scipy's own compiled ufuncs (Cephes, Boost and scipy's C++
special functions, in ``scipy.special._ufuncs``): this module only changes
how they are reached, never what they compute.

Why: ``import scipy.special`` costs ~0.08 s of process time after numpy and
pandas are loaded, of which ``scipy.special._ufuncs`` takes ~4 ms; the rest
is its array-API dispatch layer (``scipy.special._support_alternative_backends``
and ``scipy._lib._array_api``, which import array_api_compat, numpy.testing
and numpy.f2py): a tenth of ``ntxmeta analyse SPEC --only rma.REML`` at
k = 1e6 (bench/README.md). With ``SCIPY_ARRAY_API`` unset (scipy's default)
that layer hands back the naked ufunc (``_FuncInfo.wrapper``), so
``scipy.special.ndtr is scipy.special._ufuncs.ndtr``: the same object, the
same bits. tests/test_special.py checks the identity for every name here.

How: ``_ufuncs``' module init imports its sibling extension modules
relatively, which needs a parent package in ``sys.modules``. For the time of
that import a placeholder stands there: a module made from scipy.special's
own spec but not executed. It is removed afterwards, so that a later
``import scipy.special`` (any other section, scipy.stats) runs the real
package, which finds the same ``_ufuncs`` already loaded. The placeholder is
used only when it cannot be seen by anyone else: no other Python thread
runs (none can import meanwhile), scipy.special is not imported yet, and
``SCIPY_ARRAY_API`` is unset (scipy then dispatches on array types). In any
other case, or if anything fails, the functions come from
``from scipy import special``, as before.
"""
from __future__ import annotations

import os
import sys
import threading

#: The functions taken from scipy.special (module attributes of the same names).
NAMES = ("ndtr", "ndtri", "stdtr", "stdtrit", "chdtrc", "fdtrc", "gammaln")


def _from_scipy_special():
    from scipy import special
    return special


def _ufuncs():
    """``scipy.special._ufuncs`` without running scipy.special's ``__init__``, or scipy.special."""
    if ("scipy.special" in sys.modules or os.environ.get("SCIPY_ARRAY_API")
            or threading.active_count() != 1):
        return _from_scipy_special()
    import importlib
    import importlib.util

    import scipy
    module = None
    placeholder = None
    try:
        spec = importlib.util.find_spec("scipy.special")
        placeholder = importlib.util.module_from_spec(spec)
        sys.modules["scipy.special"] = placeholder
        module = importlib.import_module("scipy.special._ufuncs")
        if not all(hasattr(module, name) for name in NAMES):
            module = None
    except Exception:  # noqa: BLE001 - any surprise: the ordinary import below
        module = None
    finally:
        if placeholder is not None and sys.modules.get("scipy.special") is placeholder:
            del sys.modules["scipy.special"]
        if placeholder is not None and vars(scipy).get("special") is placeholder:
            del scipy.special
    return module if module is not None else _from_scipy_special()


_module = _ufuncs()
ndtr = _module.ndtr
ndtri = _module.ndtri
stdtr = _module.stdtr
stdtrit = _module.stdtrit
chdtrc = _module.chdtrc
fdtrc = _module.fdtrc
gammaln = _module.gammaln
del _module
