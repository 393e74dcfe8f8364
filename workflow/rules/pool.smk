rule pool:
    input:
        "data/processed/effects/{analysis}.csv",
    output:
        result=update("results/analyses/{analysis}/result.json"),
        spec=update("results/analyses/{analysis}/spec.json"),
    log:
        "logs/pool/{analysis}.log",
    params:
        digest=selection_digest,
        # a new result layout re-runs every pool job (Snakemake's params trigger)
        schema=ntx.RESULT_SCHEMA,
    run:
        ntx.rule_pool(PREFLIGHT, input, output, wildcards, log[0])
