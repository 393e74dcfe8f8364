"""Re-export of ``ntxmeta.oracle`` (the oracle adapter moved there).

Kept for the modules and tests that import ``ntxmeta.analyse``: the pipeline
(``SECTIONS``, ``analyse_data``, ``dumps``), the report and tables
(``load_result``), the extension modules (``register``) and the tests.
"""
from __future__ import annotations

from .oracle import (SECTIONS, analyse, analyse_data, dumps, load_result, loads,  # noqa: F401
                     register)
