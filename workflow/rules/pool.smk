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
    run:
        ntx.rule_pool(PREFLIGHT, input, output, wildcards, log[0])
