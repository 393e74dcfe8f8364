"""The ``ntxmeta`` command line: each pipeline step can be run by hand.

    ntxmeta analyse SPEC.json --out RESULT.json [--only rma.REML,common.EE]
                     (a spec with an "rma.mv" object: a multilevel model, ntxmeta.oracle.mv)
    ntxmeta validate [--config config/config.yaml] [--all]
    ntxmeta ingest   --out data/processed/comparisons.csv
    ntxmeta effects  --analysis NAME [--comparisons CSV] --out data/processed/effects/NAME.csv
                     [--left-out data/processed/left_out/NAME.csv]
    ntxmeta pool     --analysis NAME --effects EFFECTS.csv --out RESULT.json --spec SPEC.json
    ntxmeta summary  RESULT.json ... --csv summary.csv --md summary.md
    ntxmeta bayes    EFFECTS.csv --yi COL --vi COL --tau-prior halfnormal:0.5
                     [--mu-prior normal:MEAN:SD] [--threshold X] [--level 95]

Paths default to the project layout; run from the project root.
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap

from . import __version__


#: BLAS thread pools ``analyse`` starts when it is the process's first import of numpy
#: (see ``_cmd_analyse``).
ANALYSE_BLAS_THREADS = "1"


def _cmd_analyse(args: argparse.Namespace) -> int:
    # One analysis needs no BLAS threads: its fits sum with einsum, and its few
    # matrix products are k x p with p a handful of coefficients. Starting the
    # OpenBLAS pools of numpy and scipy costs ~0.07 s of process time (bench/README.md,
    # "ntxmeta analyse SPEC --only rma.REML"); the results are the same bytes.
    # setdefault: a user's own setting wins; no effect once numpy is loaded.
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", ANALYSE_BLAS_THREADS)
    from .oracle import analyse, dumps_bytes
    from .io import write_bytes
    result = analyse(args.spec, only=args.only)
    write_bytes(args.out, dumps_bytes(result))
    return 0


def _plan(args):
    """The plan of ``--analysis`` in the (validated) config."""
    from .plan import Config
    config = Config.load(args.config)
    if args.analysis not in config.analyses:
        raise ValueError(f"no analysis {args.analysis!r} in {args.config}; "
                         f"analyses are {', '.join(config.names)}")
    return config.analyses[args.analysis]


def _validate_all(config: str) -> int:
    """Every problem, uncapped (``ValidationError.report(limit=None)``); the exit code."""
    from .config import check_inputs, raw_data_glob
    from .prisma import check_screening
    from .validate import ValidationError, count_line
    from .workflow import raw_files
    pattern = raw_data_glob(config)
    problems, raw = [], None
    try:
        raw, _, _ = check_inputs(raw_files(pattern), config, raw_where=pattern)
    except ValidationError as err:
        problems = err.problems
    problems = problems + check_screening(raw_studies=raw)[1]
    if problems:
        print(ValidationError(problems).report(limit=None), file=sys.stderr)
        print(count_line(len(problems)), file=sys.stderr)
        return 1
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from .workflow import preflight
    if args.all and _validate_all(args.config):
        return 1
    pf = preflight(args.config)
    print(f"ntxmeta validate: data/raw and {args.config} are valid "
          f"({len(pf.comparisons)} comparisons, {len(pf.analyses)} analyses)")
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    from .workflow import ingest, preflight
    ingest(preflight(args.config), args.out)
    return 0


def _cmd_effects(args: argparse.Namespace) -> int:
    from .workflow import effects
    effects(args.comparisons, _plan(args), args.out, args.left_out)
    return 0


def _cmd_pool(args: argparse.Namespace) -> int:
    from .workflow import pool
    pool(args.effects, _plan(args), args.out, args.spec)
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from .workflow import summary
    summary(args.results, args.csv, args.md)
    return 0


def _cmd_bayes(args: argparse.Namespace) -> int:
    from .bayes import bayesmeta, parse_mu_prior, parse_tau_prior, read_effects
    from .oracle import dumps
    tau_prior = parse_tau_prior(args.tau_prior, what="--tau-prior")
    mu_prior = parse_mu_prior(args.mu_prior, what="--mu-prior")
    yi, vi = read_effects(args.csv, args.yi, args.vi)
    fit = bayesmeta(yi, vi, tau_prior=tau_prior, mu_prior=mu_prior, level=args.level,
                    threshold=args.threshold)
    sys.stdout.write(dumps(fit.to_dict()))   # non-finite numbers as metafor's "NA"/"Inf"
    return 0


#: What each subcommand does and an example, for its ``--help`` (name -> (summary, text, example)).
COMMANDS = {
    "analyse": ("run one analysis from a spec (oracle format)",
                "Fit the models a spec asks for (metafor's rma, confint, regtest, ... under "
                "metafor's key names) and write every number as JSON: the oracle adapter.",
                "ntxmeta analyse spec.json --out out.json --only rma.REML"),
    "validate": ("check data/raw and the config",
                 "Check every raw table (schema, counts, provenance), the risk-of-bias table and "
                 "the config; each problem names its file, line, column, value and rule.",
                 "ntxmeta validate --all"),
    "ingest": ("data/raw -> comparisons.csv",
               "Validate and normalise the raw tables into one row per comparison (favourable "
               "events flipped, shared control arms split, pooling flags).",
               "ntxmeta ingest --out data/processed/comparisons.csv"),
    "effects": ("effect sizes of one analysis",
                "Select one analysis's rows from comparisons.csv and compute their effect sizes "
                "(yi, vi, CI); no model is fitted.",
                "ntxmeta effects --analysis aud_heavy_drinking_rr "
                "--out data/processed/effects/aud_heavy_drinking_rr.csv"),
    "pool": ("every model one analysis asks for",
             "Fit the main model, variants, subgroups, meta-regressions and small-study tests "
             "of one analysis into its typed result (result.json) and its oracle spec.",
             "ntxmeta pool --analysis aud_heavy_drinking_rr "
             "--effects data/processed/effects/aud_heavy_drinking_rr.csv --out result.json "
             "--spec spec.json"),
    "summary": ("summary table of many results",
                "One row per analysis (k, participants, estimate, CI, PI, tau2, I2, p) as CSV "
                "and Markdown.",
                "ntxmeta summary */result.json --csv summary.csv --md summary.md"),
    "bayes": ("Bayesian random-effects meta-analysis (bayesmeta), JSON to stdout",
              "Exact Bayesian random-effects meta-analysis of one table (normal-normal model "
              "by numerical integration), JSON to stdout.",
              "ntxmeta bayes effects.csv --yi yi --vi vi --tau-prior halfnormal:0.5 "
              "--mu-prior normal:0:2"),
}


def _sub(sub, name: str, parents=()) -> argparse.ArgumentParser:
    summary, text, example = COMMANDS[name]
    return sub.add_parser(name, parents=list(parents), help=summary, description=textwrap.fill(text, 79),
                          epilog=f"example:\n  {example}",
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ntxmeta", description=__doc__.splitlines()[0].replace("``", ""),
        epilog="The whole workflow is `make` (Snakemake); each step can also be run alone.\n"
               "example:\n  ntxmeta validate && ntxmeta ingest && "
               "ntxmeta effects --analysis aud_heavy_drinking_rr --out effects.csv\n"
               "Each subcommand's --help says what it does, with an example.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ntxmeta {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = _sub(sub, "analyse")
    p.add_argument("spec", help="spec JSON (csv path relative to it)")
    p.add_argument("--out", required=True, help="result JSON to write")
    p.add_argument("--only", default=None,
                   help="comma-separated sections to compute, e.g. rma.REML,common.EE")
    p.set_defaults(func=_cmd_analyse)
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", default="config/config.yaml", help="config YAML")
    p = _sub(sub, "validate", [config])
    p.add_argument("--all", action="store_true",
                   help="list every problem (by default the first 20 of each column of each "
                        "file are listed and the rest counted)")
    p.set_defaults(func=_cmd_validate)
    p = _sub(sub, "ingest", [config])
    p.add_argument("--out", default="data/processed/comparisons.csv",
                   help="comparisons CSV to write (default: %(default)s)")
    p.set_defaults(func=_cmd_ingest)
    p = _sub(sub, "effects", [config])
    p.add_argument("--analysis", required=True, help="analysis name in the config")
    p.add_argument("--comparisons", default="data/processed/comparisons.csv",
                   help="the ingest step's output (default: %(default)s)")
    p.add_argument("--out", required=True, help="effects CSV to write")
    p.add_argument("--left-out", default=None,
                   help="also write the rows the filters match but the analysis does not use, "
                        "with the reason (the workflow: data/processed/left_out/NAME.csv)")
    p.set_defaults(func=_cmd_effects)
    p = _sub(sub, "pool", [config])
    p.add_argument("--analysis", required=True, help="analysis name in the config")
    p.add_argument("--effects", required=True, help="the effects step's CSV")
    p.add_argument("--out", required=True, help="result JSON")
    p.add_argument("--spec", required=True, help="oracle-format spec JSON to write")
    p.set_defaults(func=_cmd_pool)
    p = _sub(sub, "summary")
    p.add_argument("results", nargs="+", help="result.json files")
    p.add_argument("--csv", required=True, help="CSV to write")
    p.add_argument("--md", required=True, help="Markdown to write")
    p.set_defaults(func=_cmd_summary)
    p = _sub(sub, "bayes")
    p.add_argument("csv", help="CSV with one row per study")
    p.add_argument("--yi", required=True, help="column of effect estimates")
    p.add_argument("--vi", required=True, help="column of sampling variances (> 0)")
    p.add_argument("--tau-prior", required=True,
                   help="halfnormal:SCALE, halfcauchy:SCALE, lognormal:MU:SIGMA or uniform:UPPER")
    p.add_argument("--mu-prior", default=None, help="normal:MEAN:SD (default: flat)")
    p.add_argument("--threshold", type=float, default=0.0,
                   help="also report P(mu < THRESHOLD) (default 0)")
    p.add_argument("--level", type=float, default=95.0, help="credible level in percent")
    p.set_defaults(func=_cmd_bayes)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:
        print(f"ntxmeta {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
