"""Genotype x treatment interaction per trial: the ratio of odds ratios (ROR).

The pharmacogenetic question "do OPRM1 Asp40 carriers respond better to
naltrexone than Asn40 homozygotes?" is answered by the interaction, not by
the drug effect averaged over genotypes: pooling a trial's two genotype
strata as two studies estimates the latter. Per trial i, with the
naltrexone-vs-control log odds ratio of the bad event in each stratum,

    y_i = log OR_i(carrier) - log OR_i(homozygote)        (log ROR)
    v_i = v_i(carrier) + v_i(homozygote)

(the strata are disjoint groups of patients, so their estimates are
independent; Altman & Bland 2003, "Interaction revisited: the difference
between two estimates", BMJ 326:219). The per-trial log RORs are then
pooled like any other effect (``rma``). ROR < 1: naltrexone lowers the odds
of the bad event more in carriers than in homozygotes.

A stratum's log OR comes from its 2x2 cells (metafor ``escalc("OR")``,
with the analysis's continuity correction) or from a reported OR with its
95% CI (Cochrane Handbook 6.3.2). A trial with only one stratum has no
interaction estimate: it is listed with the reason and not pooled.

Not handled here: a contrast of genotypes within the naltrexone arm only
(carriers vs homozygotes, all on naltrexone, as pooled by Chamorro et al.
2012). It has no control arm, so it mixes the prognostic value of the
genotype with any interaction; it must be its own, labelled, analysis.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

#: The stratum whose OR is the numerator, and the reference stratum.
CARRIER = "OPRM1_Asp40_carrier"
HOMOZYGOTE = "OPRM1_Asn40_homozygote"
#: Per-trial columns carried from the strata into the effects table.
STRATUM_COLUMNS = ("yi", "vi", "events_treat", "n_treat", "events_ctrl", "n_ctrl", "row_id")


def interaction_rows(rows: pd.DataFrame, yi: np.ndarray, vi: np.ndarray) -> pd.DataFrame:
    """One row per trial: log ROR (``yi``) and its variance (``vi``), with both strata.

    Parameters
    ----------
    rows : DataFrame
        The selected stratum rows (one per trial and genotype).
    yi, vi : array
        Each row's log OR of the bad event (naltrexone vs control) and its variance.

    Returns
    -------
    DataFrame
        The first stratum row of each trial (its provenance columns), with
        ``yi``/``vi`` the interaction, ``genotype`` empty, per-stratum
        columns ``{col}_carrier`` / ``{col}_homozygote`` (log OR, variance,
        cells, row id), ``interaction_note`` saying why a trial has no
        estimate, and ``row_id`` joining the two strata's ids with "+".
    """
    frame = rows.assign(yi=yi, vi=vi).reset_index(drop=True)
    out = []
    for _study, group in frame.groupby("study_id", sort=False):
        carrier = group[group["genotype"] == CARRIER]
        homo = group[group["genotype"] == HOMOZYGOTE]
        row = group.iloc[0].copy()
        note = ""
        if len(carrier) != 1 or len(homo) != 1:
            have = ", ".join(sorted(set(group["genotype"].astype(str)))) or "none"
            note = (f"no interaction estimate: needs one row for each of {CARRIER} and "
                    f"{HOMOZYGOTE} (has: {have})")
        for tag, part in (("carrier", carrier), ("homozygote", homo)):
            for col in STRATUM_COLUMNS:
                row[f"{col}_{tag}"] = part[col].iloc[0] if len(part) == 1 else np.nan
        if note:
            row["yi"], row["vi"] = np.nan, np.nan
        else:
            row["yi"] = float(carrier["yi"].iloc[0]) - float(homo["yi"].iloc[0])
            row["vi"] = float(carrier["vi"].iloc[0]) + float(homo["vi"].iloc[0])
        ordered = pd.concat([carrier, homo, group.drop(carrier.index.union(homo.index))])
        row["row_id"] = "+".join(str(r) for r in ordered["row_id"])  # carrier first
        row["interaction_note"] = note
        row["genotype"] = ""
        row["data_type"] = "interaction"
        for col in ("events_treat", "events_ctrl"):
            row[col] = np.nan  # two strata: no single 2x2 table
        for col in ("n_treat", "n_ctrl"):  # participants of both strata
            row[col] = pd.to_numeric(group[col], errors="coerce").sum(min_count=len(group))
        out.append(row)
    return pd.DataFrame(out).reset_index(drop=True)
