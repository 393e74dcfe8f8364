"""The rows of one analysis, and a digest that changes only when they change.

An analysis (``analyses.NAME`` of ``config/config.yaml``) selects rows of
``comparisons.csv`` by its ``filters``: a row is in if, for every filter
column, its value is one of the listed values. Of those rows, an analysis
uses (``select_rows``) the ones that

1. are ``pooled`` (the pooling rules and missing data, ``ntxmeta.normalise``);
2. have the data the measure needs: binary counts for RR/OR/RD, means and
   SDs for SMD/MD/ROM, a log ratio for GEN;
3. are one per sample: where several rows share patients (the same
   ``sample_id``, e.g. two outcomes of one trial), the row the outcome
   hierarchy puts first is used (``outcome_hierarchy`` of the config:
   intention to treat with missing counted as events first, the trial's
   primary outcome first, end of treatment before follow-up), then the one
   whose outcome comes first in the analysis's ``outcome`` filter, then the
   first in file order. ``chosen_because`` of the used row says which
   criterion chose it over which row; the other row's exclusion reason says
   the same.

Rows a rule keeps for a sensitivity analysis only (``sensitivity_only``,
e.g. an unresolved sample-size conflict) are selected the same way, after
the pooled rows, and returned with ``role`` "sensitivity"; the rows of the
main model have ``role`` "main".

``matching_rows`` returns every filtered row with ``pooled`` and
``exclusion_reason`` updated for the analysis, for reports that list what
was left out and why. Rows are sorted by year, label and row_id.

Values are compared as canonical text (``canon``), so a frame read back
from CSV (booleans, integers read as floats) selects the same rows as the
frame ``normalise`` returned.
"""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd

#: The data type each measure needs.
MEASURE_DATA = {"RR": "binary", "OR": "binary", "RD": "binary",
                "SMD": "continuous", "MD": "continuous", "ROM": "continuous", "GEN": "ratio",
                "ROR": ("binary", "ratio")}
#: Float precision of the canonical text (that of comparisons.csv).
CANON_DIGITS = 15


def canon(value) -> str:
    """Canonical text of a cell or a filter value.

    Booleans become ``true``/``false``, missing values the empty string,
    numbers 15 significant digits (so 380, 380.0 and "380" agree).
    """
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return "" if math.isnan(float(value)) else format(float(value), f".{CANON_DIGITS}g")
    return str(value)


def _canon_column(series: pd.Series) -> pd.Series:
    """:func:`canon` of every cell, computed once per distinct value.

    A column of a large registry holds few distinct values (10,000 rows, a
    few dozen outcomes); canonicalising those and not every cell makes
    row selection cheap enough to run per analysis at parse time. Values
    are told apart by type as well (``True == 1`` in Python, but their
    canonical texts differ).
    """
    seen: dict = {}
    texts = [seen[key] if (key := (type(v), v)) in seen else seen.setdefault(key, canon(v))
             for v in series.astype(object)]
    return pd.Series(texts, index=series.index, dtype=object)


class CanonicalColumns:
    """The canonical text of a table's columns, each computed on first use.

    One per table, shared by every selection made from it: preflight
    selects the rows of every analysis (200 in a large registry) from the
    same table, and each column is then canonicalised once, not once per
    analysis. The table must not change while this is in use.
    """

    def __init__(self, table: pd.DataFrame):
        self.table = table
        self._columns: dict[str, np.ndarray] = {}

    def __getitem__(self, column: str) -> np.ndarray:
        if column not in self._columns:  # two threads may both compute it: same value
            self._columns[column] = _canon_column(self.table[column]).to_numpy()
        return self._columns[column]


def filter_mask(comparisons: pd.DataFrame, filters: dict,
                texts: CanonicalColumns | None = None) -> np.ndarray:
    """Rows whose value in every filter column is one of the listed values.

    ``texts`` (of ``comparisons``) reuses canonical columns across calls.

    Raises
    ------
    KeyError
        A filter names a column that the table does not have.
    """
    texts = CanonicalColumns(comparisons) if texts is None else texts
    mask = np.ones(len(comparisons), dtype=bool)
    for column, values in filters.items():
        if column not in comparisons.columns:
            raise KeyError(f"filter column '{column}' is not a column of comparisons")
        allowed = list({canon(v) for v in values})
        mask &= np.isin(texts[column], allowed)
    return mask


def _sorted(rows: pd.DataFrame) -> pd.DataFrame:
    year = pd.to_numeric(rows["year"], errors="coerce")
    order = rows.assign(_year=year).sort_values(["_year", "label", "row_id"],
                                                na_position="last", kind="mergesort")
    return order.drop(columns="_year").reset_index(drop=True)


def matching_rows(comparisons: pd.DataFrame, analysis: dict,
                  texts: CanonicalColumns | None = None) -> pd.DataFrame:
    """Every row the analysis's filters match, with ``pooled`` and ``exclusion_reason`` for it.

    Parameters
    ----------
    comparisons : DataFrame
        The comparisons table (as ``normalise`` returns it or as read from CSV).
    analysis : dict
        One analysis of the config (``filters`` and ``measure`` are used).
    texts : CanonicalColumns, optional
        Of ``comparisons``, shared by the selections of many analyses.

    Returns
    -------
    DataFrame
        The matching rows, sorted by year, label and row_id.
    """
    rows = comparisons.loc[filter_mask(comparisons, analysis["filters"], texts)].copy()
    pooled = (_canon_column(rows["pooled"]) == "true").to_numpy().copy()
    reasons = rows["exclusion_reason"].astype(object).where(rows["exclusion_reason"].notna(), "")
    reasons = [str(r) for r in reasons]
    need = MEASURE_DATA[analysis["measure"]]
    need = (need,) if isinstance(need, str) else need
    dtype_ok = rows["data_type"].isin(need).to_numpy()
    for i, dtype in enumerate(rows["data_type"]):
        if pooled[i] and dtype not in need:
            pooled[i] = False
            reasons[i] = (f"{dtype} row: measure {analysis['measure']} needs "
                          f"{' or '.join(need)} data")
    criteria = [(str(c), [canon(v) for v in vals])
                for c, vals in _criteria(analysis.get("outcome_hierarchy") or ())]
    criteria.append(("outcome", [canon(v) for v in analysis["filters"].get("outcome", [])]))
    texts_of = {c: (_canon_column(rows[c]).to_numpy() if c in rows else np.full(len(rows), ""))
                for c, _ in criteria}
    rank = [[prefs.index(t) if t in prefs else len(prefs) for t in texts_of[c]]
            for c, prefs in criteria]
    line = pd.to_numeric(rows["source_line"], errors="coerce").to_numpy()
    sens = (_canon_column(rows["sensitivity_only"]) == "true").to_numpy() \
        if "sensitivity_only" in rows else np.zeros(len(rows), dtype=bool)
    chosen = [""] * len(rows)
    role = np.where(pooled, "main", "").astype(object)
    best: dict[str, int] = {}
    candidates = [i for i in range(len(rows)) if pooled[i] or (sens[i] and dtype_ok[i])]
    order = lambda i: (not pooled[i], *(r[i] for r in rank),  # noqa: E731
                       str(rows["source_file"].iloc[i]), line[i])
    # an interaction (ROR) uses one row per sample and genotype stratum
    stratum = (_canon_column(rows["genotype"]).to_numpy() if analysis["measure"] == "ROR"
               else np.full(len(rows), ""))
    for i in sorted(candidates, key=order):
        sample = (canon(rows["sample_id"].iloc[i]), stratum[i])
        if sample not in best:
            best[sample] = i
            if sens[i]:
                role[i] = "sensitivity"
            continue
        kept = best[sample]
        why = _why(criteria, texts_of, rank, kept, i)
        role[i] = ""
        if pooled[i]:
            pooled[i] = False
            reasons[i] = (f"same patients as {rows['row_id'].iloc[kept]}, which this analysis "
                          f"uses ({why})")
        chosen[kept] = "; ".join(filter(None, (chosen[kept],
                                               f"over {rows['row_id'].iloc[i]}: {why}")))
    rows["pooled"] = pooled
    rows["exclusion_reason"] = reasons
    rows["role"] = role
    rows["chosen_because"] = chosen
    return _sorted(rows)


def _criteria(hierarchy) -> list[tuple]:
    """(column, values) pairs of a hierarchy given as the config's one-key mappings or as pairs."""
    out = []
    for item in hierarchy:
        out += list(item.items()) if isinstance(item, dict) else [tuple(item)]
    return out


def _why(criteria, texts, rank, kept: int, other: int) -> str:
    """The first criterion of the hierarchy that puts row ``kept`` before ``other``."""
    for (col, prefs), r in zip(criteria, rank):
        if r[kept] != r[other]:
            a, b = texts[col][kept] or "not given", texts[col][other] or "not given"
            if col == "outcome":
                return f"outcome {a} is listed before {b} in the analysis's filters"
            return f"{col} {a} is preferred to {b} (outcome_hierarchy)"
    return "the same on every criterion of the outcome hierarchy: the first in file order"


def select_rows(comparisons: pd.DataFrame, analysis: dict, *,
                exclude: dict | None = None, texts: CanonicalColumns | None = None) -> pd.DataFrame:
    """The rows one analysis pools.

    Parameters
    ----------
    comparisons : DataFrame
    analysis : dict
        One analysis of the config.
    exclude : dict, optional
        Filters of rows to leave out as well (a sensitivity subset of the
        config, e.g. ``{"confidence": ["low"]}``).
    texts : CanonicalColumns, optional
        Of ``comparisons``, shared by the selections of many analyses.

    Returns
    -------
    DataFrame
        The rows the analysis uses, sorted by year, label and row_id; empty
        if none. ``role`` is "main" for the rows of the main model and
        "sensitivity" for rows kept for a sensitivity analysis only.
    """
    rows = matching_rows(comparisons, analysis, texts)
    rows = rows.loc[rows["role"].ne("").to_numpy()]
    if exclude:
        rows = rows.loc[~filter_mask(rows, exclude)]
    return rows.reset_index(drop=True)


def selection_digest(comparisons: pd.DataFrame, analysis: dict,
                     texts: CanonicalColumns | None = None) -> str:
    """SHA-256 of an analysis's options and of every row its filters match.

    The rows enter with all their columns (as canonical text), pooled or
    not, so that a new or edited row changes the digest of exactly the
    analyses whose filters match it; the analysis dict enters as sorted JSON.
    """
    rows = matching_rows(comparisons, analysis, texts)
    h = hashlib.sha256()
    h.update(json.dumps(analysis, sort_keys=True, default=canon).encode("utf-8"))
    h.update(b"\x1e" + "\x1f".join(rows.columns).encode("utf-8"))
    for record in rows.itertuples(index=False):
        h.update(b"\x1e" + "\x1f".join(canon(v) for v in record).encode("utf-8"))
    return h.hexdigest()
