"""Display names: the one table from our codes to the words a reader expects.

Figures and tables name things by the codes of the data (``ae_nausea``,
``xr_injection``, ``dose_mg``, ``followup_weeks``); a reader expects
"Nausea", "XR injection", "Dose (mg)", "Follow-up (weeks)". :data:`LABELS`
holds every such name in one place; :func:`display` looks a code up and,
for a code not in the table, writes it for a reader by rule (underscores
become spaces, the first letter a capital, known acronyms in capitals).
``tests/test_figopts.py`` checks that no figure of the committed analyses
shows a code with an underscore.
"""
from __future__ import annotations

__all__ = ["LABELS", "UNITS", "ACRONYMS", "display"]

#: Words of a code that are acronyms: written in capitals when a code not in
#: :data:`LABELS` is shown ("xr_injection" -> "XR injection", not "Xr injection").
ACRONYMS = frozenset({"xr", "iv", "im", "sc", "aud", "oud", "ntx", "oprm1", "gp", "er", "sr",
                      "ocds", "udt", "ae"})

#: code -> display name. Columns (moderators, subgroup columns) with their
#: unit; vocabulary values (events, formulations, comparators) as a clinician
#: says them.
LABELS: dict[str, str] = {
    # numeric columns (meta-regression moderators)
    "dose_mg": "Dose (mg)",
    "followup_weeks": "Follow-up (weeks)",
    "year": "Year of publication",
    # subgroup columns
    "formulation": "Formulation",
    "comparator_class": "Comparator",
    "comparator_type": "Comparator",
    # formulations
    "oral": "Oral",
    "xr_injection": "XR injection",
    "depot_injection": "Depot injection",
    "implant": "Implant",
    # comparators
    "placebo": "Placebo",
    "no_treatment": "No treatment",
    "active": "Active drug",
    "usual_care": "Usual care",
    "no_medication": "No medication",
    # events counted (the forest's "Time: outcome" column)
    "ae_dizziness": "Dizziness",
    "ae_fatigue": "Fatigue",
    "ae_headache": "Headache",
    "ae_injection_site": "Injection-site reaction",
    "ae_liver_enzymes": "Raised liver enzymes",
    "ae_nausea": "Nausea",
    "ae_precipitated_withdrawal": "Precipitated withdrawal",
    "ae_vomiting": "Vomiting",
    "any_drinking": "Any drinking",
    "any_heavy_drinking": "Any heavy drinking",
    "craving_OCDS": "Craving (OCDS)",
    "craving_unnamed_scale": "Craving (scale not named)",
    "drinks_per_drinking_day": "Drinks per drinking day",
    "dropout": "Dropout",
    "no_good_clinical_outcome": "No good clinical outcome",
    "no_response": "No response",
    "not_abstinent": "Not abstinent",
    "opioid_relapse": "Opioid relapse",
    "opioid_use_2consec_positive_UDT": "Opioid use (2 consecutive positive urine tests)",
    "overdose": "Overdose",
    "percent_heavy_drinking_days": "Heavy drinking days (%)",
    "positive_or_missing_UDT_24wk": "Positive or missing urine test (24 wk)",
    "reincarceration": "Reincarceration",
    "relapse_heavy_drinking": "Relapse to heavy drinking",
    "relapse_or_dropout": "Relapse or dropout",
    "relapse_trial_defined": "Relapse (trial's definition)",
    "serious_adverse_event": "Serious adverse event",
    "withdrawal_due_to_ae": "Withdrawal due to adverse events",
    "response": "Response",
    "abstinence": "Abstinence",
    "retained_without_relapse": "Retained without relapse",
    "treatment_completion": "Treatment completion",
    "good_clinical_outcome": "Good clinical outcome",
}


#: The unit of a numeric column, as a meta-regression slope is read ("per mg").
UNITS: dict[str, str] = {"dose_mg": "mg", "followup_weeks": "week", "year": "year"}


def display(code) -> str:
    """The display name of a code: :data:`LABELS`, else the code written for a reader.

    A code not in the table: underscores become spaces and the first letter
    a capital; in a lower-case code, words that are acronyms
    (:data:`ACRONYMS`) are written in capitals. A text that has capitals of
    its own keeps them ("Anton 1999" stays as it is).
    """
    text = str(code)
    if text in LABELS:
        return LABELS[text]
    words = text.replace("_", " ").split(" ")
    if text == text.lower():
        words = [w.upper() if w in ACRONYMS else w for w in words]
    out = " ".join(words)
    return out[:1].upper() + out[1:]
