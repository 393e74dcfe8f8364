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
        with ntx.logged(log[0], "forest"):
            ntx.forest_figure(input.effects, input.result, config, wildcards.analysis, output.png)
