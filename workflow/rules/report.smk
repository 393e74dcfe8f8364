rule report:
    input:
        unpack(evidence_table_csvs),
        results=analysis_results,
        effects=analysis_effects,
        left_out=analysis_left_out,
        figures=figure_files,
        changelog="results/changelog.json",
        changes="results/figures/changelog/changes.svg",
        prisma=prisma_svg,
        joint=joint_results,
        joint_figures=joint_figure_files,
    output:
        report(
            update("results/report.html"),
            caption="../report/report.rst",
            category="Report",
        ),
    log:
        "logs/report.log",
    run:
        ntx.rule_report(PREFLIGHT, input, output, log[0])
