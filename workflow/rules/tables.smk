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
