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
        with ntx.logged(log[0], "summary_table"):
            ntx.summary(input, output.csv, output.md)
