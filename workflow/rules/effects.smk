rule effects:
    # No file input: the rows come from the comparisons validated and
    # normalised when the workflow was parsed (PREFLIGHT, the table ingest
    # writes), and the selection digest (params) re-runs exactly the analyses
    # whose rows or options changed. Snakemake checks no params of a job
    # downstream of a job that runs, so comparisons.csv as input (even
    # ancient) would hide every change of rows.
    output:
        effects=update("data/processed/effects/{analysis}.csv"),
        left_out=update("data/processed/left_out/{analysis}.csv"),
    log:
        "logs/effects/{analysis}.log",
    params:
        digest=selection_digest,
    run:
        ntx.rule_effects(PREFLIGHT, output, wildcards, log[0])
