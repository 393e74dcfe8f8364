"""Joint models of one question: every time point of each trial, and networks of treatments.

A pairwise analysis keeps one row per trial (``rules.repeated_timepoints``
picks one time point; a multi-arm trial's shared control is split). The
two kinds here keep what those rules drop and model it instead, on the
multilevel engine (``ntxmeta.multilevel.rma_mv``, checked against metafor
3.8-1 ``rma.mv`` in tests/fixtures/oracle_mv):

* ``timepoints``: every time point of every trial (end of treatment and
  after it). random = ~ 1 | trial/estimate (metafor's three-level model),
  the time point (end of treatment / post-treatment follow-up) as the
  moderator without an intercept, so each coefficient is the pooled effect
  at that time, and the Wald test of their difference answers "does the
  benefit last after treatment stops?". The sampling errors of one trial's
  time points are correlated (the same patients) by an amount no trial
  reports: V = ``vcalc(vi, trial, rho)`` with an assumed rho (default 0.5)
  and the fit repeated over ``rhos`` (``rho_sensitivity``); cluster-robust
  CR2 tests (``cr2``, clubSandwich) do not depend on V being right.
* ``network``: the contrast-based consistency model (``ntxmeta.network``)
  of every treatment the rows compare, a multi-arm trial's contrasts
  sharing their control arm (Cov = that arm's variance, ``arm_var``): all
  pairwise effects, league table, P-scores, design-by-treatment and
  node-splitting inconsistency, and the transitivity inputs per trial.

Nodes of a network: the experimental arm is the row's ``treatment``
(acamprosate, naltrexone+acamprosate) or naltrexone, split by formulation
when the plan asks (``nodes: formulation``: oral, XR injection, implant);
the control arm is placebo, usual care / no medication (one open-label
node), or an active comparator's ``comparator_drug``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from ._common import MetaError, z_crit

KINDS = ("timepoints", "network")
#: Time-point codes in display order, with their names.
TIMES = {"end_of_treatment": "End of treatment", "follow_up": "After treatment (follow-up)"}
#: Assumed within-trial correlation of one outcome's time points, and its sensitivity range.
DEFAULT_RHO = 0.5
DEFAULT_RHOS = (0.0, 0.2, 0.4, 0.6, 0.8)
NODE_NAMES = {"oral": "oral naltrexone", "xr_injection": "XR-naltrexone",
              "depot_injection": "depot naltrexone", "implant": "naltrexone implant"}
CONTROL_NODES = {"placebo": "placebo", "usual_care": "usual care / no medication",
                 "no_medication": "usual care / no medication"}
#: Per-trial facts shown beside a network (transitivity: are the trials alike
#: in everything but the treatments compared?).
TRANSITIVITY = ("population", "comparator", "formulation_detail", "dose_detail",
                "followup_weeks", "outcome", "analysis_population")
#: The layout of a joint result.json; in the digest, so a new layout re-runs the models.
SCHEMA = "ntxmeta.joint/2"


@dataclass(frozen=True)
class JointPlan:
    """What one joint model asks for (config ``timepoints`` or ``networks``)."""

    name: str
    kind: str
    title: str
    measure: str
    filters: tuple                 # ((column, (value, ...)), ...)
    hierarchy: tuple = ()
    level: float = 95.0
    add: float = 0.5
    to: str = "only0"
    drop00: bool = False
    method: str = "REML"
    rho: float = DEFAULT_RHO
    rhos: tuple = DEFAULT_RHOS
    reference: str = "placebo"
    nodes: str = "drug"            # "drug" or "formulation" (naltrexone by formulation)

    @classmethod
    def of(cls, name: str, kind: str, block: Mapping, hierarchy=()) -> "JointPlan":
        """The plan of a resolved config block (``config.resolve`` filled its defaults)."""
        return cls(name=name, kind=kind, title=str(block["title"]), measure=str(block["measure"]),
                   filters=tuple((str(k), tuple(v)) for k, v in block["filters"].items()),
                   hierarchy=tuple(hierarchy), level=float(block["level"]),
                   add=float(block["add"]), to=str(block["to"]), drop00=bool(block["drop00"]),
                   method=str(block["method"]), rho=float(block["rho"]),
                   rhos=tuple(float(r) for r in block["rhos"]),
                   reference=str(block["reference"]), nodes=str(block["nodes"]))

    @property
    def selection(self) -> dict:
        """The block as :mod:`ntxmeta.select` reads it (and its digest hashes)."""
        return {"kind": self.kind, "filters": {k: list(v) for k, v in self.filters},
                "measure": self.measure, "add": self.add, "to": self.to, "drop00": self.drop00,
                "level": self.level, "method": self.method, "rho": self.rho,
                "rhos": list(self.rhos), "reference": self.reference, "nodes": self.nodes,
                "title": self.title,
                "outcome_hierarchy": [[c, list(v)] for c, v in self.hierarchy]}


# --------------------------------------------------------------------------- rows

def treat_node(row: Mapping, nodes: str) -> str:
    """The network node of a row's experimental arm."""
    t = str(row.get("treatment") or "")
    if t:
        return t
    return NODE_NAMES.get(str(row["formulation"]), "naltrexone") if nodes == "formulation" \
        else "naltrexone"


def control_node(row: Mapping) -> str:
    """The network node of a row's control arm (an active comparator by its drug)."""
    ctype = str(row["comparator_type"])
    if ctype == "active":
        drug = str(row.get("comparator_drug") or "")
        if not drug:
            raise MetaError(f"row {row['row_id']}: an active comparator needs comparator_drug "
                            "(its network node; data/raw/README.md)")
        return drug
    return CONTROL_NODES[ctype]


def unit_ids(rows: pd.DataFrame, plan: JointPlan) -> pd.Series:
    """What a joint model keeps one row of: a trial's time point, or a trial's arm pair.

    Used as ``sample_id`` by :func:`ntxmeta.select.matching_rows`, whose
    outcome hierarchy then picks one outcome per unit.
    """
    trial = rows["sample_id"].astype(str)
    if plan.kind == "timepoints":
        weeks = pd.to_numeric(rows["followup_weeks"], errors="coerce")
        return trial + "@" + weeks.map(lambda w: "" if pd.isna(w) else f"{w:g}")
    recs = rows.to_dict("records")
    pairs = [f"{treat_node(r, plan.nodes)} vs {control_node(r)}" for r in recs]
    return trial + ":" + pd.Series(pairs, index=rows.index)


def select(comparisons: pd.DataFrame, plan: JointPlan, texts=None) -> pd.DataFrame:
    """Every row the plan's filters match, with ``role`` ("main" if used), as
    ``select.matching_rows`` gives them; the trial is the rows' shared cluster."""
    from .select import filter_mask, matching_rows
    rows = comparisons.loc[filter_mask(comparisons, plan.selection["filters"], texts)].copy()
    rows["trial"] = rows["sample_id"].astype(str)
    rows["sample_id"] = unit_ids(rows, plan)
    return matching_rows(rows, plan.selection)


def problem(rows: pd.DataFrame, plan: JointPlan) -> str:
    """Why the selected rows cannot make the model ("" when they can), said at parse time."""
    used = rows.loc[rows["role"].ne("").to_numpy()]
    if plan.kind == "network":
        recs = used.to_dict("records")
        nodes = {treat_node(r, plan.nodes) for r in recs} | {control_node(r) for r in recs}
        if len(nodes) < 3:
            return (f"network '{plan.name}' has {len(nodes)} treatments ({', '.join(sorted(nodes))}) "
                    "among the rows it selects; a network needs 3 (widen its filters, add the "
                    "rows of other arms, or make it a pairwise analysis)")
        return ""
    timed = used["timepoint"].isin(list(TIMES)).sum()
    if timed < 3:
        return (f"time-point model '{plan.name}' selects {timed} rows with a time point; it "
                "needs 3 (timepoint: end_of_treatment or follow_up)")
    return ""


def digest(rows: pd.DataFrame, plan: JointPlan) -> str:
    """SHA-256 of the result layout, the plan's options and every row its filters match
    (a re-run trigger)."""
    import hashlib
    h = hashlib.sha256(SCHEMA.encode())
    h.update(json.dumps(plan.selection, sort_keys=True, default=str).encode())
    h.update(rows.to_csv(index=False).encode("utf-8"))
    return h.hexdigest()


def effects_table(rows: pd.DataFrame, plan: JointPlan) -> pd.DataFrame:
    """The rows a joint model uses: the pairwise effects columns, the trial, the
    time point or the two nodes, and the control arm's variance (networks)."""
    from . import effects as ef, multilevel as ml
    from .pipeline import EFFECT_COLUMNS, row_effects
    used = rows.loc[rows["role"].ne("").to_numpy()].reset_index(drop=True)
    opts = {"add": plan.add, "to": plan.to, "drop00": plan.drop00}
    yi, vi, reasons = row_effects(used, plan.measure, opts)
    if plan.kind == "timepoints":
        reasons = [r or ("" if t in TIMES else "no time point given (timepoint is empty): "
                         "the model asks end of treatment or after")
                   for r, t in zip(reasons, used["timepoint"].astype(str))]
    bad = np.array([bool(r) for r in reasons])
    out = pd.DataFrame({c: used[c] if c in used else np.nan for c in EFFECT_COLUMNS})
    out.insert(2, "trial", used["trial"])
    out["yi"], out["vi"] = np.where(bad, np.nan, yi), np.where(bad, np.nan, vi)
    out["exclusion_reason"] = reasons
    if plan.kind == "network":
        recs = used.to_dict("records")
        out["treat1"] = [treat_node(r, plan.nodes) for r in recs]
        out["treat2"] = [control_node(r) for r in recs]
        # the control arm's variance with the continuity correction its table got
        x1, n1, x2, n2 = (pd.to_numeric(used[c], errors="coerce").to_numpy(float)
                          for c in ("events_treat", "n_treat", "events_ctrl", "n_ctrl"))
        corr = ef.corrected_tables(*ef.zero_cell_flags(x1, n1 - x1, x2, n2 - x2),
                                   to=plan.to, drop00=plan.drop00)
        out["shared_var"] = ml.arm_var(plan.measure, x=x2, n=n2, add=np.where(corr, plan.add, 0.0))
        for col in TRANSITIVITY:
            if col not in out:
                out[col] = used[col] if col in used else ""
    return out


# --------------------------------------------------------------------------- results

def _scale(measure: str):
    from .result import Scale
    return Scale.of(measure)


@dataclass(frozen=True)
class Estimate:
    """One pooled estimate on the model's scale, with its CI and p."""

    label: str
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    pval: float
    k: int = 0
    trials: int = 0


@dataclass(frozen=True)
class JointResult:
    """The typed result of one joint model (results/joint/{name}/result.json)."""

    name: str
    kind: str
    title: str
    measure: str
    method: str
    level: float
    k: int
    trials: int
    estimates: tuple           # Estimate per time point, or per treatment vs the reference
    variance: dict             # sigma2 / tau2 by name
    tests: dict                # name -> {stat, df, pval, what}
    rows: tuple                # (row_id, trial, label, time or pair, yi, vi), used rows
    sensitivity: tuple = ()    # rho or CR2 rows: dicts
    pairs: tuple = ()          # network: every pair (Estimate labelled "A vs B")
    league: tuple = ()         # network: the league table's rows (lists of text)
    ranking: tuple = ()        # network: dicts treatment, pscore, sucra, mean_rank
    node_split: tuple = ()     # network: dicts
    treatments: tuple = ()
    designs: tuple = ()
    transitivity: tuple = ()   # network: per-trial dicts
    #: network: effect, ci_low, ci_high, n_studies (T x T, ``treatments`` order;
    #: effect[i][j] = treatment j vs i, analysis scale): what the figures draw
    matrices: dict | None = None
    notes: tuple = ()
    schema: str = SCHEMA

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, allow_nan=True, default=float) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "JointResult":
        d = json.loads(text)
        for key in ("estimates", "pairs"):
            d[key] = tuple(Estimate(**e) for e in d[key])
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True)
class NetworkView:
    """A stored network result as ``networkplots`` draws it (no refit): the
    attributes of ``network.NetworkFit`` the figures read."""

    treatments: tuple
    reference: str
    level: float
    effect: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_studies: np.ndarray

    @classmethod
    def of(cls, result: "JointResult") -> "NetworkView":
        m = result.matrices
        return cls(tuple(result.treatments), result.treatments[0], result.level,
                   *(np.asarray(m[k], dtype=float) for k in ("effect", "ci_low", "ci_high")),
                   np.asarray(m["n_studies"], dtype=int))

    def index(self, treatment: str) -> int:
        return self.treatments.index(treatment)

    def comparisons(self) -> list[tuple[str, str, int]]:
        T = len(self.treatments)
        return [(self.treatments[i], self.treatments[j], int(self.n_studies[i, j]))
                for i in range(T) for j in range(i + 1, T) if self.n_studies[i, j] > 0]


def read_result(path: str | Path) -> JointResult:
    return JointResult.from_json(Path(path).read_text(encoding="utf-8"))


def _estimate(label, b, se, ci, p, k=0, trials=0) -> Estimate:
    return Estimate(str(label), float(b), float(se), float(ci.low), float(ci.high), float(p),
                    int(k), int(trials))


def fit(effects: pd.DataFrame, plan: JointPlan) -> JointResult:
    """The model of ``plan.kind`` on an effects table (rows with yi and vi)."""
    use = effects.loc[np.isfinite(effects["yi"].to_numpy(float))].reset_index(drop=True)
    if plan.kind == "timepoints":
        return _fit_timepoints(use, plan)
    return _fit_network(use, plan)


def _row_tuples(use: pd.DataFrame, what) -> tuple:
    return tuple((str(r.row_id), str(r.trial), str(r.label), str(w), float(r.yi), float(r.vi))
                 for r, w in zip(use.itertuples(), what))


def _fit_timepoints(use: pd.DataFrame, plan: JointPlan) -> JointResult:
    from . import multilevel as ml
    times = [t for t in TIMES if (use["timepoint"] == t).any()]
    if len(use) < 3 or not times:
        raise MetaError(f"{plan.name}: a time-point model needs at least 3 estimates with a "
                        f"time point, got {len(use)}")
    t = use["timepoint"].to_numpy(str)
    X = np.column_stack([(t == c).astype(float) for c in times])
    trial, est = use["trial"].to_numpy(str), use["row_id"].to_numpy(str)
    yi, vi = use["yi"].to_numpy(float), use["vi"].to_numpy(float)
    random = ml.Nested(outer=trial, inner=est)
    kw = dict(X=X, random=random, method=plan.method, level=plan.level, names=times)
    V = ml.vcalc(vi, trial, rho=plan.rho)
    main = ml.rma_mv(yi, V, **kw)
    notes = [f"Within-trial correlation of time points assumed rho = {plan.rho:g} "
             "(vcalc); no trial reports it. The table repeats the fit for other values."]
    ridge = _split_ridge(yi, V, main, kw)
    if ridge is not None:
        kw["sigma2"] = [np.nan, 0.0]
        main, other = ridge
        notes.append("The data cannot tell between-trial from within-trial heterogeneity apart "
                     f"(the likelihood is flat along their sum, {main.sigma2[0]:.4g}): the "
                     "simpler model, all of it between trials, is shown. With all of it within "
                     f"trials instead, the estimates ({_scale(plan.measure).name}) are "
                     + ", ".join(f"{TIMES[c]} {float(_scale(plan.measure).show(b)):.2f}"
                                 for c, b in zip(times, other.beta)) + ".")
    ests = tuple(_estimate(TIMES[c], b, s, ci, p, int((t == c).sum()),
                           len(set(trial[t == c])))
                 for c, b, s, ci, p in zip(times, main.beta, main.se, main.ci, main.pval))
    tests = {}
    if len(times) == 2:
        w = ml.wald(main, [[-1.0, 1.0]])
        b, se, z = float(w.estimate[0]), float(w.se[0]), float(z_crit(plan.level))
        tests["difference"] = {"what": "after treatment minus end of treatment (Wald)",
                               "estimate": b, "se": se, "ci_low": b - z * se,
                               "ci_high": b + z * se, "stat": float(w.stat[0]), "df": 1,
                               "pval": float(w.pval[0])}
    sens = []
    for r, f in zip(plan.rhos, ml.rho_sensitivity(yi, vi, trial, plan.rhos, **kw).fits):
        sens.append({"rho": r, **{c: [float(b), float(ci.low), float(ci.high)]
                                  for c, b, ci in zip(times, f.beta, f.ci)}})
    if len(set(trial)) >= 2:
        try:
            rob = ml.cr2(main, trial)
            sens.append({"rho": "CR2", **{c: [float(b), float(b - _tq(d, plan.level) * s),
                                               float(b + _tq(d, plan.level) * s), float(d)]
                                          for c, b, s, d in zip(times, rob.beta, rob.se, rob.df)}})
            notes.append("CR2: cluster-robust CIs with Satterthwaite df (clubSandwich); "
                         "with few trials per time point the df are small and the CIs wide.")
        except (ValueError, np.linalg.LinAlgError) as err:
            notes.append(f"No CR2 inference: {err}")
    for c in times:
        if len(set(trial[t == c])) < 2:
            notes.append(f"{TIMES[c]}: {len(set(trial[t == c]))} trial only; its estimate is "
                         "that trial's, not a pooled one.")
    return JointResult(name=plan.name, kind=plan.kind, title=plan.title, measure=plan.measure,
                       method=plan.method, level=plan.level, k=len(use),
                       trials=len(set(trial)), estimates=ests,
                       variance={"sigma2 (between trials)": float(main.sigma2[0]),
                                 "sigma2 (within trials, between estimates)":
                                     float(main.sigma2[1])},
                       tests=tests, rows=_row_tuples(use, [TIMES.get(x, x) for x in t]),
                       sensitivity=tuple(sens), notes=tuple(notes))


RIDGE_TOL = 1e-6
"""Log-likelihood slack within which a two-level split counts as flat: the
optimiser converges the log-likelihood to ~1e-10, and a difference of 1e-6
is a likelihood-ratio statistic of 2e-6, no evidence for either split."""


def _split_ridge(yi, V, fit, kw):
    """(all-between fit, all-within fit) when the likelihood cannot separate the
    two Nested variances, else None.

    With one trial reporting several time points, the within-trial variance
    may be confounded with the time-point coefficients: the log-likelihood is
    then the same for every split of sigma2 between the levels, and where an
    optimiser stops on that ridge is arbitrary (metafor stops at the equal
    split it starts from). Both extremes are fitted (metafor's
    ``sigma2 = c(NA, 0)`` and ``c(0, NA)``) and compared with the free fit.
    """
    from . import multilevel as ml
    ends = [ml.rma_mv(yi, V, **kw, sigma2=s) for s in ([np.nan, 0.0], [0.0, np.nan])]
    if all(f.ll >= fit.ll - RIDGE_TOL for f in ends):
        return ends[0], ends[1]
    return None


def _tq(df: float, level: float) -> float:
    from scipy import stats
    return float(stats.t.ppf(1 - (1 - level / 100) / 2, df))


def _fit_network(use: pd.DataFrame, plan: JointPlan) -> JointResult:
    from . import network as nw
    trial = use["trial"].to_numpy(str)
    t1, t2 = use["treat1"].to_numpy(str), use["treat2"].to_numpy(str)
    treatments = sorted(set(t1) | set(t2))
    ref = plan.reference if plan.reference in treatments else treatments[0]
    sv = use["shared_var"].to_numpy(float)
    multi = any((trial == s).sum() > 1 for s in set(trial))
    f = nw.network(trial, t1, t2, use["yi"].to_numpy(float), use["vi"].to_numpy(float),
                   shared_var=sv if multi else None, reference=ref, method=plan.method,
                   level=plan.level)
    k_of = {frozenset((a, b)): n for a, b, n in f.comparisons()}
    pairs = tuple(_estimate(f"{p.treat2} vs {p.treat1}", p.estimate, p.se, p.ci, p.pval,
                            k_of.get(frozenset((p.treat1, p.treat2)), 0))
                  for p in f.pairs())
    ests = tuple(e for e in pairs if e.label.endswith(f" vs {ref}"))
    scale = _scale(plan.measure)
    lg = nw.league(f, transform=np.exp if scale.log else None)
    rank = nw.rank_treatments(f, small_values="good")
    tests, notes = {}, []
    try:
        dbt = nw.design_by_treatment(f)
        tests["design_by_treatment"] = {"what": "design-by-treatment inconsistency (Wald)",
                                        "stat": float(dbt.QM), "df": int(dbt.df),
                                        "pval": float(dbt.pval)}
    except (MetaError, ValueError) as err:
        notes.append(f"No design-by-treatment test: {err}")
    splits = tuple({k: (v if isinstance(v, str) else float(v)) for k, v in asdict(s).items()
                    if not isinstance(v, (tuple, list, dict))}
                   for s in nw.node_split(f))
    if not splits or all(not np.isfinite(s.get("indirect", np.nan)) for s in splits):
        notes.append("No comparison has indirect evidence apart from its direct evidence (no "
                     "loop is closed outside a multi-arm trial), so node-splitting has nothing "
                     "to compare; the design-by-treatment test, where there is one, still "
                     "compares designs that share a comparison.")
    trans = []
    for s in sorted(set(trial)):
        rows = use.loc[trial == s]
        first = rows.iloc[0]
        trans.append({"trial": s, "label": str(first["label"]).split(" (")[0],
                      "arms": " / ".join(sorted(set(rows["treat1"]) | set(rows["treat2"]))),
                      **{c: "; ".join(dict.fromkeys(str(v) for v in rows[c] if str(v) not in
                                                    ("", "nan"))) for c in TRANSITIVITY}})
    return JointResult(name=plan.name, kind=plan.kind, title=plan.title, measure=plan.measure,
                       method=plan.method, level=plan.level, k=len(use),
                       trials=len(set(trial)), estimates=ests,
                       variance={"tau2 (every comparison)": float(f.tau2)},
                       tests=tests,
                       rows=_row_tuples(use, [f"{a} vs {b}" for a, b in zip(t1, t2)]),
                       pairs=pairs, league=tuple(tuple(r) for r in lg.cells),
                       ranking=tuple({"treatment": t, "pscore": float(p), "sucra": float(s),
                                      "best_first": rank.order.index(t) + 1}
                                     for t, p, s in zip(rank.treatments, rank.pscore,
                                                        rank.sucra)),
                       node_split=splits, treatments=tuple(f.treatments),
                       matrices={"effect": f.effect.tolist(), "ci_low": f.ci_low.tolist(),
                                 "ci_high": f.ci_high.tolist(),
                                 "n_studies": f.n_studies.astype(int).tolist()},
                       designs=tuple(sorted(nw.designs(f))), transitivity=tuple(trans),
                       notes=tuple(notes))


def write(effects_csv: str | Path, plan: JointPlan, result_json: str | Path) -> None:
    """The joint pool step: an effects table in, result.json out."""
    from .io import write_text
    eff = pd.read_csv(effects_csv, keep_default_na=True)
    write_text(result_json, fit(eff, plan).to_json())


# --------------------------------------------------------------------------- tables
# Every number on the shown scale (ratios for RR/OR), formatting only.

#: The joint models' tables (``workflow.JOINT_TABLES``, the outputs of rule joint_tables).
TABLES = ("timepoints", "network_effects", "network_ranking", "network_inconsistency",
          "network_transitivity", "network_league")


def _shown(result: JointResult, value: float) -> float:
    return float(_scale(result.measure).show(value))


def timepoints_table(results: list[JointResult]) -> pd.DataFrame:
    """Per model: the estimate at each time point, their difference, and every refit
    under another assumed correlation (and CR2)."""
    rows = []
    for r in (x for x in results if x.kind == "timepoints"):
        scale = _scale(r.measure)
        for e in r.estimates:
            rows.append({"model": r.name, "row": e.label, "assumption": "main model", "k": e.k,
                         "trials": e.trials, scale.name: _shown(r, e.estimate),
                         "ci_low": _shown(r, e.ci_low), "ci_high": _shown(r, e.ci_high),
                         "p": e.pval})
        d = r.tests.get("difference")
        if d:
            rows.append({"model": r.name, "row": "After vs end of treatment (ratio of ratios)"
                         if scale.log else "After minus end of treatment",
                         "assumption": "main model", "k": r.k, "trials": r.trials,
                         scale.name: _shown(r, d["estimate"]), "ci_low": _shown(r, d["ci_low"]),
                         "ci_high": _shown(r, d["ci_high"]), "p": d["pval"]})
        for s in r.sensitivity:
            what = "CR2 cluster-robust" if s["rho"] == "CR2" else f"rho = {s['rho']:g}"
            for code, vals in s.items():
                if code == "rho":
                    continue
                rows.append({"model": r.name, "row": TIMES[code], "assumption": what, "k": None,
                             "trials": None, scale.name: _shown(r, vals[0]),
                             "ci_low": _shown(r, vals[1]), "ci_high": _shown(r, vals[2]),
                             "p": None})
    return pd.DataFrame(rows)


def network_tables(results: list[JointResult]) -> dict[str, pd.DataFrame]:
    """The network tables of :data:`TABLES` (all networks, one column names which)."""
    nets = [r for r in results if r.kind == "network"]
    eff, rank, inc, trans, league = [], [], [], [], []
    for r in nets:
        name = _scale(r.measure).name
        for e in r.pairs:
            eff.append({"network": r.name, "comparison": e.label, "direct_trials": e.k,
                        name: _shown(r, e.estimate), "ci_low": _shown(r, e.ci_low),
                        "ci_high": _shown(r, e.ci_high), "p": e.pval})
        for x in sorted(r.ranking, key=lambda x: -x["pscore"]):
            rank.append({"network": r.name, "treatment": x["treatment"],
                         "p_score": x["pscore"], "sucra": x["sucra"]})
        for key, t in r.tests.items():
            inc.append({"network": r.name, "test": t["what"], "comparison": "",
                        "direct": None, "indirect": None, "statistic": t["stat"],
                        "df": t["df"], "p": t["pval"]})
        for s in r.node_split:
            direct, indirect = (_shown(r, s[k]) if np.isfinite(s[k]) else None
                                for k in ("direct", "indirect"))
            inc.append({"network": r.name, "test": "node-splitting (back-calculation)",
                        "comparison": f"{s['treat2']} vs {s['treat1']}", "direct": direct,
                        "indirect": indirect, "statistic": s["z"], "df": None, "p": s["pval"]})
        for t in r.transitivity:
            trans.append({"network": r.name, **t})
        for i, row in enumerate(r.league):
            league.append({"network": r.name, "row": i + 1,
                           **{f"c{j + 1}": cell for j, cell in enumerate(row)}})
    return {"network_effects": pd.DataFrame(eff), "network_ranking": pd.DataFrame(rank),
            "network_inconsistency": pd.DataFrame(inc),
            "network_transitivity": pd.DataFrame(trans), "network_league": pd.DataFrame(league)}


def write_tables(result_paths, outputs: Mapping[str, tuple]) -> None:
    """All joint results -> the tables of :data:`TABLES`; ``outputs`` maps a stem to
    its (csv, md) paths."""
    from .tables import write_table
    results = [read_result(p) for p in result_paths]
    frames = {"timepoints": timepoints_table(results), **network_tables(results)}
    for stem in TABLES:
        csv_path, md_path = outputs[stem]
        write_table(frames[stem], csv_path, md_path,
                    digits={"p": 3, "p_score": 2, "sucra": 2, "k": 0, "trials": 0,
                            "direct_trials": 0, "df": 0, "row": 0})
