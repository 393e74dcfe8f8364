"""A seeded synthetic trial registry for benchmarking the workflow at scale.

Writes, into a copy of the project, ``data/raw/synthetic_{indication}.csv``
(one row per trial, with the columns and closed vocabularies of the real
``data/raw/*.csv``, valid for ``ntxmeta validate``) and a
``config/config.yaml`` with one analysis per distinct (indication, outcome,
formulation) combination, so that every trial belongs to exactly one
analysis::

    .venv/bin/python bench/make_registry.py /tmp/registry            # 10,000 trials, 200 analyses
    .venv/bin/python bench/make_registry.py /tmp/small --trials 500 --analyses 20
    cd /tmp/registry && /work/main/.venv/bin/snakemake --cores 2

The same seed gives byte-identical files. What is drawn (all from one
``numpy.random.Generator``):

- analyses: the first ``--analyses`` of a seeded shuffle of the 4 x 18 x 4
  (indication, outcome, formulation) combinations; binary outcomes are
  analysed as RR (every fifth OR, every seventh RD), continuous ones as SMD
  (every third MD); every fourth analysis has a subgroup (comparator type),
  every fourth (offset by two) meta-regressions on dose and year, one in ten
  a DL or PM estimator, one in eight Hartung-Knapp, one in ten goes into
  the summary of findings;
- k per analysis: uniform on [K_MIN, K_MAX], then adjusted one by one so
  that the total is exactly ``--trials``;
- per analysis a true effect ``mu ~ N(-0.2, 0.15)`` (log risk ratio, or
  standardised mean difference) and heterogeneity ``tau ~ U(0, 0.3)``; per
  trial ``theta ~ N(mu, tau)``, arm sizes ``U{20..300}``, a control risk
  ``U(0.15, 0.7)`` and binomial counts (favourable outcomes are written as
  the favourable counts, as a source reports them; the pipeline flips
  them), or normal sample means with SDs around a scale of 10;
- year ``U{1985..2024}``, follow-up 8..52 weeks, a dose typical of the
  formulation, 10% of rows derived and 15% of low confidence (so that the
  sensitivity subsets drop rows).

The project parts copied are those the workflow needs (Snakefile,
workflow/, profiles/, config/README.md, data/raw/README.md, Makefile);
``workflow/schemas`` is copied as files, not as its link into the package.
"""
from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
#: Project parts a copy needs to run the workflow (the package is installed).
PROJECT_PARTS = ("Snakefile", "workflow", "profiles", "config/README.md", "data/raw/README.md",
                 "data/reference/published_estimates.csv",
                 "Makefile", "pyproject.toml")
DEFAULT_SEED = 20240607
DEFAULT_TRIALS = 10_000
DEFAULT_ANALYSES = 200
#: Trials per analysis before the total is adjusted: mean 50 at the defaults.
K_MIN, K_MAX = 10, 90
INDICATIONS = ("alcohol", "opioid", "stimulant", "gambling")
FORMULATIONS = ("oral", "xr_injection", "depot_injection", "implant")
COMPARATORS = ("placebo", "active", "usual_care", "no_medication")
#: Comparator mix: mostly placebo, as in the real data.
COMPARATOR_P = (0.7, 0.1, 0.1, 0.1)
#: Typical naltrexone doses (mg per day oral, per injection or implant otherwise).
DOSES = {"oral": (25, 50, 100, 150), "xr_injection": (190, 380),
         "depot_injection": (150, 300), "implant": (800, 1000)}
YEARS = (1985, 2024)
FOLLOWUP_WEEKS = (8, 52)
ARM_SIZE = (20, 300)
CONTROL_RISK = (0.15, 0.7)
#: Risk cap so that the naltrexone arm's risk stays a probability.
MAX_RISK = 0.97
CONTINUOUS_SCALE = 10.0
P_DERIVED = 0.10
P_LOW_CONFIDENCE = 0.15


def outcome_kinds() -> dict[str, dict]:
    """Every outcome code with its kind and direction, from the package's raw schema."""
    from ntxmeta.validate import load_schema
    return load_schema("raw_trials")["x-outcomes"]


def raw_columns() -> list[str]:
    """The header of the real raw tables (data/raw/alcohol.csv), in its order."""
    with open(ROOT / "data/raw/alcohol.csv", newline="", encoding="utf-8-sig") as fh:
        return next(csv.reader(fh))


def plan_analyses(rng: np.random.Generator, n: int, outcomes: dict[str, dict]) -> list[dict]:
    """``n`` distinct (indication, outcome, formulation) analyses with their options."""
    combos = [(i, o, f) for i in INDICATIONS for o in outcomes for f in FORMULATIONS]
    if n > len(combos):
        raise ValueError(f"at most {len(combos)} distinct analyses, asked for {n}")
    order = rng.permutation(len(combos))[:n]
    plans = []
    for j, c in enumerate(sorted(order)):
        indication, outcome, formulation = combos[c]
        kind = outcomes[outcome]["kind"]
        if kind == "binary":
            measure = "OR" if j % 5 == 4 else "RD" if j % 7 == 6 else "RR"
        else:
            measure = "MD" if j % 3 == 2 else "SMD"
        a = {"name": f"{indication}_{outcome}_{formulation}".lower()[:80],
             "indication": indication, "outcome": outcome, "formulation": formulation,
             "kind": kind, "favourable": bool(outcomes[outcome].get("favourable", False)),
             "measure": measure, "subgroup": j % 4 == 0, "moderators": j % 4 == 2,
             "main": j % 10 == 0}
        if j % 10 == 3:
            a["method"] = "DL"
        elif j % 10 == 7:
            a["method"] = "PM"
        if j % 8 == 5:
            a["test"] = "knha"
        plans.append(a)
    return plans


def trials_per_analysis(rng: np.random.Generator, n_analyses: int, n_trials: int) -> np.ndarray:
    """k per analysis, uniform on [K_MIN, K_MAX], adjusted to sum to ``n_trials`` exactly."""
    if n_trials < 2 * n_analyses:
        raise ValueError("need at least two trials per analysis")
    k = rng.integers(K_MIN, K_MAX + 1, size=n_analyses)
    while k.sum() != n_trials:  # one trial at a time, at seeded positions
        i = rng.integers(n_analyses)
        if k.sum() < n_trials:
            k[i] += 1
        elif k[i] > 2:
            k[i] -= 1
    return k


def trial_rows(rng: np.random.Generator, a: dict, k: int, first_id: int, seed: int) -> list[dict]:
    """``k`` synthetic trials of one analysis (one row each, as a source reports them)."""
    mu = rng.normal(-0.2, 0.15)
    tau = rng.uniform(0.0, 0.3)
    rows = []
    for t in range(k):
        sid = first_id + t
        year = int(rng.integers(YEARS[0], YEARS[1] + 1))
        comparator = str(rng.choice(COMPARATORS, p=COMPARATOR_P))
        n1, n2 = (int(x) for x in rng.integers(ARM_SIZE[0], ARM_SIZE[1] + 1, size=2))
        theta = rng.normal(mu, tau)
        derived = rng.random() < P_DERIVED
        low = rng.random() < P_LOW_CONFIDENCE
        row = {
            "row_id": f"Syn{sid:05d}_{a['outcome']}",
            "study_id": f"Syn{sid:05d}",
            "label": f"Syn {sid:05d} {year}",
            "author": "Synthetic registry",
            "year": year,
            "indication": a["indication"],
            "population": f"synthetic {a['indication']} use disorder",
            "comparator_type": comparator,
            "comparator": comparator.replace("_", " "),
            "formulation": a["formulation"],
            "formulation_detail": a["formulation"].replace("_", " "),
            "dose_mg": int(rng.choice(DOSES[a["formulation"]])),
            "outcome": a["outcome"],
            "n_treat": n1,
            "n_ctrl": n2,
            "followup_weeks": int(rng.integers(FOLLOWUP_WEEKS[0], FOLLOWUP_WEEKS[1] + 1)),
            "source_url_or_ref": f"synthetic: bench/make_registry.py --seed {seed}",
            "quote": f"Synthetic trial {sid} drawn around a true effect of {mu:.3f} "
                     f"(tau {tau:.3f}).",
            "derived": "yes (synthetic: counts computed from percentages)" if derived else "no",
            "confidence": "low" if low else str(rng.choice(("high", "medium"))),
        }
        if a["kind"] == "binary":
            pc = rng.uniform(*CONTROL_RISK)
            pt = min(pc * float(np.exp(theta)), MAX_RISK)
            bad1, bad2 = int(rng.binomial(n1, pt)), int(rng.binomial(n2, pc))
            if a["favourable"]:  # written as the source reports it: the good events
                row.update(measure_type="binary_favourable_event",
                           events_treat=n1 - bad1, events_ctrl=n2 - bad2)
            else:
                row.update(measure_type="binary", events_treat=bad1, events_ctrl=bad2)
        else:
            sd1, sd2 = (CONTINUOUS_SCALE * rng.uniform(0.7, 1.3) for _ in range(2))
            base = 3 * CONTINUOUS_SCALE
            m2 = base + rng.normal(0, sd2 / np.sqrt(n2))
            m1 = base + theta * CONTINUOUS_SCALE + rng.normal(0, sd1 / np.sqrt(n1))
            row.update(measure_type="continuous", mean_treat=round(m1, 2),
                       sd_treat=round(sd1, 2), mean_ctrl=round(m2, 2), sd_ctrl=round(sd2, 2))
        rows.append(row)
    return rows


def config_for(plans: list[dict]) -> dict:
    """The config: the real config's defaults, rules and sensitivity, and the analyses."""
    real = yaml.safe_load((ROOT / "config/config.yaml").read_text(encoding="utf-8"))
    analyses = {}
    for a in plans:
        entry = {"title": f"Synthetic: {a['indication']}, {a['outcome']}, {a['formulation']}",
                 "filters": {"indication": [a["indication"]], "outcome": [a["outcome"]],
                             "formulation": [a["formulation"]]},
                 "measure": a["measure"]}
        if a["subgroup"]:
            entry["subgroup"] = "comparator_type"
        if a["moderators"]:
            entry["moderators"] = ["dose_mg", "year"]
        if a["main"]:  # a main analysis pools one comparator class (config checks)
            entry["main"] = True
            entry["filters"]["comparator_class"] = ["placebo"]
        for key in ("method", "test"):
            if key in a:
                entry[key] = a[key]
        analyses[a["name"]] = entry
    return {"raw_data": "data/raw/*.csv", "defaults": real.get("defaults", {}),
            "rules": real.get("rules", {}), "sensitivity": real.get("sensitivity", {}),
            "analyses": analyses}


def copy_project(dest: Path) -> None:
    """The parts of the project the workflow needs, links resolved."""
    for part in PROJECT_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, symlinks=False, dirs_exist_ok=True)
        elif src.exists():
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / part)


def write_registry(dest: Path, *, trials: int = DEFAULT_TRIALS, analyses: int = DEFAULT_ANALYSES,
                   seed: int = DEFAULT_SEED, copy: bool = True) -> dict:
    """Write the synthetic data/raw/*.csv and config/config.yaml into ``dest``.

    Returns a summary: rows per file, analyses, figures the workflow will draw.
    """
    dest = Path(dest)
    if copy:
        copy_project(dest)
    rng = np.random.default_rng(seed)
    outcomes = outcome_kinds()
    plans = plan_analyses(rng, analyses, outcomes)
    ks = trials_per_analysis(rng, analyses, trials)
    columns = raw_columns()
    by_file: dict[str, list[dict]] = {i: [] for i in INDICATIONS}
    next_id = 1
    for a, k in zip(plans, ks):
        by_file[a["indication"]].extend(trial_rows(rng, a, int(k), next_id, seed))
        next_id += int(k)
    raw = dest / "data/raw"
    raw.mkdir(parents=True, exist_ok=True)
    for old in raw.glob("*.csv"):
        old.unlink()
    counts = {}
    for indication, rows in by_file.items():
        if not rows:
            continue
        path = raw / f"synthetic_{indication}.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        counts[path.name] = len(rows)
    cfg = config_for(plans)
    (dest / "config").mkdir(parents=True, exist_ok=True)
    (dest / "config/config.yaml").write_text(
        f"# Synthetic registry: bench/make_registry.py --trials {trials} --analyses {analyses} "
        f"--seed {seed}\n" + yaml.safe_dump(cfg, sort_keys=False, width=100), encoding="utf-8")
    from ntxmeta.workflow import FIGURES
    bubbles = sum(2 for a in plans if a["moderators"])
    return {"files": counts, "trials": int(sum(counts.values())), "analyses": len(plans),
            "figures": len(FIGURES) * len(plans) + bubbles}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dest", type=Path, help="folder to write the project copy into")
    p.add_argument("--trials", type=int, default=DEFAULT_TRIALS)
    p.add_argument("--analyses", type=int, default=DEFAULT_ANALYSES)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--no-copy", action="store_true",
                   help="write only data/raw and config/config.yaml (dest is already a copy)")
    args = p.parse_args(argv)
    if args.dest.resolve() == ROOT:
        p.error("refusing to overwrite the project's own data/raw and config")
    summary = write_registry(args.dest, trials=args.trials, analyses=args.analyses,
                             seed=args.seed, copy=not args.no_copy)
    print(f"{summary['trials']} trials in {summary['analyses']} analyses "
          f"({summary['figures']} figures) -> {args.dest}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
