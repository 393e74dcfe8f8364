"""Re-export of ``ntxmeta.oracle.sections`` (moved into the oracle adapter)."""
from __future__ import annotations

from .oracle.sections import (RMA_SECTION_METHODS, common_ee_section, fit_dict,  # noqa: F401
                              fit_used, per_row, prediction_dict, rma_section)
