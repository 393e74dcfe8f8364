rule summary_table:
    input:
        analysis_results,
    output:
        csv=report(
            update("results/tables/summary.csv"),
            caption="../report/summary.rst",
            category="Tables",
        ),
        md=update("results/tables/summary.md"),
    log:
        "logs/tables/summary.log",
    run:
        ntx.rule_summary(input, output, log[0])


rule evidence_tables:
    input:
        effects=analysis_effects,
        results=analysis_results,
        published="data/reference/published_estimates.csv",
    output:
        summary_of_findings_csv=report(
            update("results/tables/summary_of_findings.csv"),
            caption="../report/summary_of_findings.rst",
            category="Tables",
        ),
        summary_of_findings_md=update("results/tables/summary_of_findings.md"),
        certainty_csv=report(
            update("results/tables/certainty.csv"),
            caption="../report/certainty.rst",
            category="Tables",
        ),
        certainty_md=update("results/tables/certainty.md"),
        sensitivity_csv=update("results/tables/sensitivity.csv"),
        sensitivity_md=update("results/tables/sensitivity.md"),
        subgroups_csv=update("results/tables/subgroups.csv"),
        subgroups_md=update("results/tables/subgroups.md"),
        small_study_effects_csv=update("results/tables/small_study_effects.csv"),
        small_study_effects_md=update("results/tables/small_study_effects.md"),
        published_comparison_csv=update("results/tables/published_comparison.csv"),
        published_comparison_md=update("results/tables/published_comparison.md"),
        bayes_csv=report(
            update("results/tables/bayes.csv"),
            caption="../report/bayes_table.rst",
            category="Tables",
        ),
        bayes_md=update("results/tables/bayes.md"),
        tsa_csv=report(
            update("results/tables/tsa.csv"),
            caption="../report/tsa_table.rst",
            category="Tables",
        ),
        tsa_md=update("results/tables/tsa.md"),
    log:
        "logs/tables/evidence.log",
    run:
        ntx.rule_evidence_tables(PREFLIGHT, input, output, log[0])


# The changelog reads its own previous output (update(): Snakemake keeps it),
# records a version when the evidence changed and only touches the files
# otherwise. comparisons.csv is rewritten by every config edit (ingest reads
# the config): ancient() keeps that alone from re-running the changelog (and
# the report after it); a changed row changes an effects table or a summary.
rule changelog:
    input:
        comparisons=ancient("data/processed/comparisons.csv"),
        effects=analysis_effects,
        summary="results/tables/summary.csv",
        sof="results/tables/summary_of_findings.csv",
        joint=joint_results,
    output:
        json=update("results/changelog.json"),
        md=report(
            update("results/changelog.md"),
            caption="../report/changelog.rst",
            category="Tables",
        ),
        png=report(
            update("results/figures/changelog/changes.png"),
            caption="../report/changes.rst",
            category="Evidence versions",
        ),
        svg=update("results/figures/changelog/changes.svg"),
    log:
        "logs/changelog.log",
    run:
        ntx.rule_changelog(input, output, log[0])
