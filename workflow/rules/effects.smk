rule effects:
    # No file input: the rows come from the comparisons validated and
    # normalised when the workflow was parsed (PREFLIGHT), and the selection
    # digest (params) re-runs exactly the analyses whose rows or options
    # changed. A file input on comparisons.csv would re-run every analysis
    # whenever any row changed.
    output:
        "data/processed/effects/{analysis}.csv",
    params:
        digest=selection_digest,
    log:
        "logs/effects/{analysis}.log",
    run:
        with ntx.logged(log[0], "effects"):
            ntx.effects(PREFLIGHT, wildcards.analysis, output[0])
