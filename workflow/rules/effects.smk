rule effects:
    input:
        # ancient: a new comparisons.csv re-runs only the analyses whose rows
        # changed, which the selection digest (params) tells.
        comparisons=ancient("data/processed/comparisons.csv"),
    output:
        "data/processed/effects/{analysis}.csv",
    params:
        digest=selection_digest,
    log:
        "logs/effects/{analysis}.log",
    run:
        with ntx.logged(log[0], "effects"):
            ntx.effects(input.comparisons, config, wildcards.analysis, output[0])
