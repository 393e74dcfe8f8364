rule report:
    input:
        effects=analysis_effects,
        results=analysis_results,
        figures=figure_files,
    output:
        report(
            "results/report.html",
            caption="../report/report.rst",
            category="Report",
        ),
    log:
        "logs/report.log",
    run:
        ntx.rule_report(input, output, log[0], config)
