rule forest:
    input:
        effects="data/processed/effects/{analysis}.csv",
        result="results/analyses/{analysis}/result.json",
    output:
        png=report(
            "results/figures/forest/{analysis}.png",
            caption="../report/forest.rst",
            category="Forest plots",
        ),
        svg="results/figures/forest/{analysis}.svg",
    log:
        "logs/figures/forest/{analysis}.log",
    run:
        ntx.rule_forest(input, output, wildcards, log[0], config)
