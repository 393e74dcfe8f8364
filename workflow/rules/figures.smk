rule forest:
    input:
        effects="data/processed/effects/{analysis}.csv",
        result="results/analyses/{analysis}/result.json",
    output:
        png=report(
            "results/figures/forest/{analysis}.png",
            caption="../report/forest.rst",
            category="Forest plots",
            subcategory="{analysis}",
        ),
        svg="results/figures/forest/{analysis}.svg",
    log:
        "logs/figures/forest/{analysis}.log",
    run:
        ntx.rule_figure("forest", input, output, wildcards, log[0], config)


rule funnel:
    input:
        effects="data/processed/effects/{analysis}.csv",
        result="results/analyses/{analysis}/result.json",
    output:
        png=report(
            "results/figures/funnel/{analysis}.png",
            caption="../report/funnel.rst",
            category="Funnel plots",
        ),
        svg="results/figures/funnel/{analysis}.svg",
    log:
        "logs/figures/funnel/{analysis}.log",
    run:
        ntx.rule_figure("funnel", input, output, wildcards, log[0], config)


rule cumulative:
    input:
        effects="data/processed/effects/{analysis}.csv",
        result="results/analyses/{analysis}/result.json",
    output:
        png=report(
            "results/figures/cumulative/{analysis}.png",
            caption="../report/cumulative.rst",
            category="Cumulative meta-analyses",
        ),
        svg="results/figures/cumulative/{analysis}.svg",
    log:
        "logs/figures/cumulative/{analysis}.log",
    run:
        ntx.rule_figure("cumulative", input, output, wildcards, log[0], config)


rule leave_one_out:
    input:
        effects="data/processed/effects/{analysis}.csv",
        result="results/analyses/{analysis}/result.json",
    output:
        png=report(
            "results/figures/leave_one_out/{analysis}.png",
            caption="../report/leave_one_out.rst",
            category="Leave-one-out analyses",
        ),
        svg="results/figures/leave_one_out/{analysis}.svg",
    log:
        "logs/figures/leave_one_out/{analysis}.log",
    run:
        ntx.rule_figure("leave_one_out", input, output, wildcards, log[0], config)


rule bubble:
    input:
        effects="data/processed/effects/{analysis}.csv",
        result="results/analyses/{analysis}/result.json",
    output:
        png=report(
            "results/figures/bubble/{analysis}__{moderator}.png",
            caption="../report/bubble.rst",
            category="Meta-regression",
        ),
        svg="results/figures/bubble/{analysis}__{moderator}.svg",
    log:
        "logs/figures/bubble/{analysis}__{moderator}.log",
    run:
        ntx.rule_figure("bubble", input, output, wildcards, log[0], config)
