rule effects:
    # comparisons.csv is ancient(): it changes whenever any row changes, so
    # its time stamp would re-run every analysis. The selection digest
    # (params) re-runs exactly the analyses whose rows or options changed.
    input:
        comparisons=ancient("data/processed/comparisons.csv"),
    output:
        "data/processed/effects/{analysis}.csv",
    log:
        "logs/effects/{analysis}.log",
    params:
        digest=selection_digest,
    run:
        ntx.rule_effects(PREFLIGHT, input, output, wildcards, log[0])
