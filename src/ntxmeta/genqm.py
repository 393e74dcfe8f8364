"""Placeholder while the GENQM estimator is written (being implemented now)."""
from ._common import MetaError


def genqm_tau2(y, v, m, X, a):
    raise MetaError("GENQM is not implemented yet")
