rule summary_table:
    input:
        analysis_results,
    output:
        csv=report(
            "results/tables/summary.csv",
            caption="../report/summary.rst",
            category="Tables",
        ),
        md="results/tables/summary.md",
    log:
        "logs/tables/summary.log",
    run:
        ntx.rule_summary(input, output, log[0])


rule evidence_tables:
    input:
        effects=analysis_effects,
        results=analysis_results,
    output:
        report(
            multiext("results/tables/summary_of_findings", ".csv", ".md"),
            caption="../report/summary_of_findings.rst",
            category="Tables",
        ),
        multiext("results/tables/sensitivity", ".csv", ".md"),
        multiext("results/tables/subgroups", ".csv", ".md"),
        multiext("results/tables/small_study_effects", ".csv", ".md"),
    log:
        "logs/tables/evidence.log",
    run:
        ntx.rule_evidence_tables(input, log[0], config)
