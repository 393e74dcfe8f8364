# The four figures of an analysis are one job: they read the same two files,
# and one job instead of four keeps Snakemake's scheduling cheap when there
# are hundreds of analyses.
rule figures:
    input:
        effects="data/processed/effects/{analysis}.csv",
        result="results/analyses/{analysis}/result.json",
    output:
        forest_png=report(
            update("results/figures/forest/{analysis}.png"),
            caption="../report/forest.rst",
            category="Forest plots",
            subcategory="{analysis}",
        ),
        forest_svg=update("results/figures/forest/{analysis}.svg"),
        funnel_png=report(
            update("results/figures/funnel/{analysis}.png"),
            caption="../report/funnel.rst",
            category="Funnel plots",
        ),
        funnel_svg=update("results/figures/funnel/{analysis}.svg"),
        cumulative_png=report(
            update("results/figures/cumulative/{analysis}.png"),
            caption="../report/cumulative.rst",
            category="Cumulative meta-analyses",
        ),
        cumulative_svg=update("results/figures/cumulative/{analysis}.svg"),
        leave_one_out_png=report(
            update("results/figures/leave_one_out/{analysis}.png"),
            caption="../report/leave_one_out.rst",
            category="Leave-one-out analyses",
        ),
        leave_one_out_svg=update("results/figures/leave_one_out/{analysis}.svg"),
        bayes_posterior_png=report(
            update("results/figures/bayes_posterior/{analysis}.png"),
            caption="../report/bayes_posterior.rst",
            category="Bayesian random effects",
        ),
        bayes_posterior_svg=update("results/figures/bayes_posterior/{analysis}.svg"),
        bayes_forest_png=report(
            update("results/figures/bayes_forest/{analysis}.png"),
            caption="../report/bayes_forest.rst",
            category="Bayesian random effects",
        ),
        bayes_forest_svg=update("results/figures/bayes_forest/{analysis}.svg"),
    log:
        "logs/figures/{analysis}.log",
    params:
        figures=figures_digest,
    run:
        ntx.rule_figures(PREFLIGHT, input, output, wildcards, log[0])


rule rob_figures:
    input:
        effects="data/processed/effects/{analysis}.csv",
        result="results/analyses/{analysis}/result.json",
    output:
        rob_traffic_light_png=report(
            update("results/figures/rob_traffic_light/{analysis}.png"),
            caption="../report/rob_traffic_light.rst",
            category="Risk of bias",
        ),
        rob_traffic_light_svg=update("results/figures/rob_traffic_light/{analysis}.svg"),
        rob_summary_png=report(
            update("results/figures/rob_summary/{analysis}.png"),
            caption="../report/rob_summary.rst",
            category="Risk of bias",
        ),
        rob_summary_svg=update("results/figures/rob_summary/{analysis}.svg"),
    log:
        "logs/figures/rob/{analysis}.log",
    params:
        figures=rob_figures_digest,
    run:
        ntx.rule_rob_figures(PREFLIGHT, input, output, wildcards, log[0])


rule bubble:
    input:
        effects="data/processed/effects/{analysis}.csv",
        result="results/analyses/{analysis}/result.json",
    output:
        png=report(
            update("results/figures/bubble/{analysis}__{moderator}.png"),
            caption="../report/bubble.rst",
            category="Meta-regression",
        ),
        svg=update("results/figures/bubble/{analysis}__{moderator}.svg"),
    log:
        "logs/figures/bubble/{analysis}__{moderator}.log",
    params:
        figures=bubble_digest,
    run:
        ntx.rule_bubble(PREFLIGHT, input, output, wildcards, log[0])


# PDF and TIFF, when the config's figure options ask for them (formats): one
# job per figure and format, so that the default run (PNG and SVG) has no
# job more than before.
rule figure_print:
    input:
        effects="data/processed/effects/{analysis}.csv",
        result="results/analyses/{analysis}/result.json",
    output:
        update("results/figures/{kind}/{analysis}.{ext}"),
    log:
        "logs/figures/{kind}/{analysis}.{ext}.log",
    wildcard_constraints:
        kind="|".join(ntx.FIGURES + ntx.ROB_FIGURES),
        ext="pdf|tiff",
    params:
        figures=print_digest,
    run:
        ntx.rule_figure_print(PREFLIGHT, input, output, wildcards, log[0])


rule bubble_print:
    input:
        effects="data/processed/effects/{analysis}.csv",
        result="results/analyses/{analysis}/result.json",
    output:
        update("results/figures/bubble/{analysis}__{moderator}.{ext}"),
    log:
        "logs/figures/bubble/{analysis}__{moderator}.{ext}.log",
    wildcard_constraints:
        ext="pdf|tiff",
    params:
        figures=print_digest,
    run:
        ntx.rule_figure_print(PREFLIGHT, input, output, wildcards, log[0])


rule tsa_figure:
    input:
        effects="data/processed/effects/{analysis}.csv",
        result="results/analyses/{analysis}/result.json",
    output:
        png=report(
            update("results/figures/tsa/{analysis}.png"),
            caption="../report/tsa.rst",
            category="Trial sequential analyses",
        ),
        svg=update("results/figures/tsa/{analysis}.svg"),
    log:
        "logs/figures/tsa/{analysis}.log",
    run:
        ntx.rule_tsa_figure(input, output, log[0])


# The PRISMA 2020 flow diagram of the screening log (data/screening/); the log
# was checked against data/raw's trials when the Snakefile was read.
rule prisma:
    input:
        records="data/screening/records.csv",
        studies="data/screening/studies.csv",
    output:
        png=report(
            update("results/figures/prisma/prisma.png"),
            caption="../report/prisma.rst",
            category="Study selection",
        ),
        svg=update("results/figures/prisma/prisma.svg"),
        pdf=update("results/figures/prisma/prisma.pdf"),
    log:
        "logs/figures/prisma.log",
    run:
        ntx.rule_prisma(input, output, log[0])
