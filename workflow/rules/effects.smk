rule effects:
    # No file input: the rows come from the comparisons validated and
    # normalised when the workflow was parsed (PREFLIGHT), and the selection
    # digest (params) re-runs exactly the analyses whose rows or options
    # changed. A file input on comparisons.csv would re-run every analysis
    # whenever any row changed.
    output:
        "data/processed/effects/{analysis}.csv",
    log:
        "logs/effects/{analysis}.log",
    params:
        digest=selection_digest,
    run:
        ntx.rule_effects(PREFLIGHT, output, wildcards, log[0])
