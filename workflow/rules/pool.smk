rule pool:
    input:
        "data/processed/effects/{analysis}.csv",
    output:
        result="results/analyses/{analysis}/result.json",
        spec="results/analyses/{analysis}/spec.json",
    params:
        digest=selection_digest,
    log:
        "logs/pool/{analysis}.log",
    run:
        with ntx.logged(log[0], "pool"):
            ntx.pool(input[0], config, wildcards.analysis, output.result, output.spec)
